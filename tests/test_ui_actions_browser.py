"""Issue 20, each result's actions and the tabs' restores, in a real browser (Playwright driving
Debian's Chromium, headless) against `python app.py`: what a person sees."""

from __future__ import annotations

import re

import pytest

from tests.helpers import finished_inpaint
from tests.test_ui_browser import ARTIFACTS, TIMEOUT_MS, _wait_text
from tests.test_ui_loop_browser import app, browser  # noqa: F401 - the module's one app and browser
from tests.test_ui_loop_browser import pytestmark as browser_marks

pytestmark = browser_marks


@pytest.fixture
def page(app, browser):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    yield page
    page.close()


def _generate_with_ctrl_enter(page, prompt: str) -> str:
    box = page.locator("#gen-prompt textarea")
    box.fill(prompt)
    page.wait_for_function("() => document.body.dataset.ctrlEnter === 'ready'")  # the page's load script ran
    box.press("Control+Enter")
    _wait_text(page, "gen-status", "done")
    return re.search(r"seed (\d+)", page.locator("#gen-status").inner_text()).group(1)


def test_ctrl_enter_runs_and_the_download_is_named_by_prompt_and_seed(page):
    seed = _generate_with_ctrl_enter(page, "red circle top left")
    name = f"red-circle-top-left_seed{seed}.png"
    page.locator("#gen-gallery img").first.wait_for()
    _wait_text(page, "gen-download", name)  # the button names the file before it is saved
    with page.expect_download() as info:
        page.locator("#gen-download").click()
    assert info.value.suggested_filename == name
    page.screenshot(path=ARTIFACTS / "actions-1-download.png", full_page=True)


def test_use_as_edit_source_moves_the_result_into_edit(page):
    _generate_with_ctrl_enter(page, "a blue square")
    page.locator("#gen-gallery img").first.wait_for()
    page.locator("#gen-use-edit").click()
    page.locator("#edit-instruction textarea").wait_for(state="visible")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#edit-editor canvas, #edit-editor img')].length > 0"
    )
    page.wait_for_timeout(1000)  # the editor loads its background
    page.locator("#edit-instruction textarea").fill("make it red")
    page.locator("#edit-instruction textarea").press("Control+Enter")  # the source is there: Edit runs
    _wait_text(page, "edit-status", "done")
    page.locator("#edit-compare img").first.wait_for()  # before / after of the edit
    page.screenshot(path=ARTIFACTS / "actions-2-use-as-edit.png", full_page=True)


def test_sizes_offered_are_the_models_and_no_other(page):
    # each choice is a radio inside its label; the page renders its components after it loads
    page.locator("#gen-size").get_by_role("radio").first.wait_for(state="attached")
    labels = page.locator("#gen-size label").all_inner_texts()
    assert labels and all(re.search(r"\((\d+)x(\d+)\)", text) for text in labels)
    sides = [tuple(map(int, re.search(r"\((\d+)x(\d+)\)", t).groups())) for t in labels]
    assert all(min(size) == 128 for size in sides), sides  # the model draws 128 px
    assert "Size (the model draws 128 px)" in page.locator("#gen-size").inner_text()
    assert not any(256 in size or 512 in size for size in sides)


def _magenta_box(picture):
    """The bounding box (left, top, right, bottom) of the brush's magenta on the shown teal source,
    and of the source itself, in screen pixels. Only magenta inside the source counts: the
    editor's toolbar shows the brush colour too. The test's mask does not touch the source's
    edges, so teal frames the whole source."""
    import numpy as np

    rgb = np.asarray(picture.convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    teal = (r < 40) & (abs(g - 128) < 30) & (abs(b - 128) < 30)

    def box(mask):
        ys, xs = np.nonzero(mask)
        return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None

    shown = box(teal)
    if shown is None:
        return None, None
    magenta = np.zeros_like(teal)
    left, top, right, bottom = shown
    inside = rgb[top:bottom, left:right]
    magenta[top:bottom, left:right] = (inside[..., 0] > 200) & (inside[..., 1] < 60) & (inside[..., 2] > 200)
    return box(magenta), shown


def test_reuse_parameters_on_an_inpaint_image_shows_its_mask_in_edit(app, page, tiny_model_dir):  # noqa: F811
    """What a person sees after Reuse parameters on an inpaint image: the source in the editor and
    its mask in the mask box, white where it was; pressing Edit then makes the same masked edit."""
    import numpy as np

    from seedling.backend.services import build_services
    from seedling.backend.settings import Settings

    services = build_services(Settings(data_dir=app.data_dir, model_path=tiny_model_dir))
    try:
        _job, image = finished_inpaint(services, "paint a moon", (0, 128, 128))
    finally:
        services.close()

    page.get_by_role("tab", name="History").click()
    page.locator("#history-refresh").click()
    page.locator(f"#history-gallery button.thumbnail-item:has-text('#{image.id} ')").click()
    _wait_text(page, "history-details", "paint a moon")
    page.locator("#history-reuse").click()
    page.locator("#edit-instruction textarea").wait_for(state="visible")
    _wait_text(page, "edit-status", f"Restored the parameters of image #{image.id} (inpaint)")
    # the white part of the picture the mask box shows, as fractions of it (read in the page: the
    # box redraws its <img> while it settles)
    white = page.wait_for_function(
        """() => {
          const img = document.querySelector('#edit-mask img');
          if (!img || !img.complete || !img.naturalWidth) return null;
          const c = document.createElement('canvas');
          c.width = img.naturalWidth; c.height = img.naturalHeight;
          const g = c.getContext('2d'); g.drawImage(img, 0, 0);
          const d = g.getImageData(0, 0, c.width, c.height).data;
          let x0 = c.width, y0 = c.height, x1 = -1, y1 = -1;
          for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++)
            if (d[(y * c.width + x) * 4] > 127) { x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); }
          return x1 < 0 ? null : [x0 / c.width, y0 / c.height, (x1 + 1) / c.width, (y1 + 1) / c.height];
        }"""
    ).json_value()
    seen = [v * 128 for v in white]
    assert all(abs(got - want) <= 3 for got, want in zip(seen, (16, 32, 80, 96), strict=True)), seen
    page.screenshot(path=ARTIFACTS / "actions-3-reuse-inpaint-mask.png", full_page=True)

    page.locator("#edit-run").click()  # the same masked edit, not a whole-image one
    _wait_text(page, "edit-status", "done")
    new_job = int(re.search(r"Job (\d+): done", page.locator("#edit-status").inner_text()).group(1))
    services = build_services(Settings(data_dir=app.data_dir, model_path=tiny_model_dir))
    try:
        again = services.jobs.get(new_job)
        mask = np.asarray(services.history.open(again.spec["mask_image_id"])) > 127
    finally:
        services.close()
    assert again.spec["kind"] == "inpaint" and again.spec["prompt"] == "paint a moon"
    assert mask[32:96, 16:80].all() and mask.sum() == 64 * 64


def test_a_png_of_a_size_the_model_does_not_draw_is_refused_with_a_sentence(page, tmp_path):
    """A 512 px picture from another tool, dropped on Generate: its prompt comes back, its size does
    not (the model draws 128 px), the status says so, and Generate then draws an offered size."""
    from PIL import Image

    from seedling.storage.pngmeta import png_info

    other = tmp_path / "lighthouse.png"
    Image.new("RGB", (512, 512), "navy").save(
        other, pnginfo=png_info("a lighthouse at dusk\nSteps: 20, CFG scale: 7, Seed: 42, Size: 512x512")
    )
    page.locator("#gen-png-drop input[type=file]").set_input_files(str(other))
    _wait_text(page, "gen-status", "Its size 512x512 is not one this model draws")
    status = page.locator("#gen-status").inner_text()
    assert "Use one of: 128x128" in status and "The size choice was left as it was" in status
    assert page.locator("#gen-prompt textarea").input_value() == "a lighthouse at dusk"
    assert page.locator("#gen-size input[type=radio]:checked").get_attribute("value") == "1:1"
    page.locator("#gen-run").click()
    _wait_text(page, "gen-status", "done")
    size = page.wait_for_function(  # once the picture has loaded
        "() => { const i = document.querySelector('#gen-gallery img');"
        " return i && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null; }"
    ).json_value()
    assert size == [128, 128]
    page.screenshot(path=ARTIFACTS / "actions-4-off-grid-png.png", full_page=True)
