"""Issue 20, compose by placing, in a real browser (Playwright driving Debian's Chromium, headless)
against `python app.py`: what a person sees. Two references, a layout picked, one box dragged and
one resized on the canvas, the job run; then History's Reuse parameters (on a fresh page) and the
result's PNG dropped on Compose put the same boxes back on the canvas. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from tests.helpers import open_stores
from tests.test_ui_browser import ARTIFACTS, TIMEOUT_MS, _wait_text
from tests.test_ui_loop_browser import app, browser  # noqa: F401 - the module's one app and browser
from tests.test_ui_loop_browser import pytestmark as browser_marks

pytestmark = browser_marks

# Each box on the canvas as fractions (x0, y0, x1, y1) of the frame, with its label: what is drawn.
DRAWN = """
() => {
  const frame = document.getElementById('compose-canvas-frame');
  return [...frame.querySelectorAll('.seedling-box')].map(b => [
    b.offsetLeft / frame.clientWidth, b.offsetTop / frame.clientHeight,
    (b.offsetLeft + b.offsetWidth) / frame.clientWidth, (b.offsetTop + b.offsetHeight) / frame.clientHeight,
    b.querySelector('span').textContent]);
}
"""
SIDE_BY_SIDE = [[0.0, 0.25, 0.5, 0.75], [0.5, 0.25, 1.0, 0.75]]
MOVED = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.25, 1.0, 0.75]]  # box 1 dragged up
PLACED = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.25, 0.875, 0.625]]  # then box 2's corner pulled in


def _new_page(browser, app):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.get_by_role("tab", name="Compose").click()
    page.locator("#compose-canvas-frame").wait_for()
    return page


def _drawn(page, count: int) -> list:
    page.wait_for_function(
        "n => document.querySelectorAll('#compose-canvas-frame .seedling-box').length === n", arg=count
    )
    return page.evaluate(DRAWN)


def _wait_drawn(page, boxes: list) -> None:
    """Until the canvas shows exactly these boxes (to a pixel), labelled 1, 2, ... in order."""
    page.wait_for_function(
        f"want => {{ const got = ({DRAWN})(); return got.length === want.length && got.every((g, j) =>"
        " g[4] === String(j + 1) && g.slice(0, 4).every((v, k) => Math.abs(v - want[j][k]) < 0.01)); }",
        arg=boxes,
    )


def _boxes_text(page) -> list:
    return json.loads(page.locator("#compose-boxes textarea").input_value() or "null")


def _choose_layout(page, name: str) -> None:
    page.locator("#compose-layout input").click()
    page.get_by_role("option", name=re.compile(re.escape(name))).click()


def _settled_box(page, locator) -> dict:
    """The locator's bounding box once it reads the same twice 100 ms apart: the canvas may
    redraw (replacing its boxes) more than once after a layout change, and a box measured while it
    is replaced reads None."""
    last = None
    for _ in range(100):
        now = locator.bounding_box()
        if now is not None and now == last:
            return now
        last = now
        page.wait_for_timeout(100)
    raise AssertionError(f"{locator} did not settle on screen within 10 s (last read: {last})")


def _drag(page, start: tuple[float, float], by: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + by[0] / 2, start[1] + by[1] / 2, steps=4)
    page.mouse.move(start[0] + by[0], start[1] + by[1], steps=4)
    page.mouse.up()


@pytest.fixture
def references(tmp_path):
    paths = []
    for name, colour in (("red", (220, 30, 30)), ("blue", (30, 60, 220))):
        paths.append(tmp_path / f"{name}.png")
        Image.new("RGB", (128, 128), colour).save(paths[-1])
    return paths


def test_boxes_placed_on_the_canvas_run_and_come_back_with_the_image(app, browser, references):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    page = _new_page(browser, app)
    _wait_text(page, "compose-canvas", "Free: the prompt places the references")  # the script fills it after load
    for i, path in enumerate(references):
        page.locator(f"#compose-ref-{i} input[type=file]").set_input_files(str(path))
        page.locator(f"#compose-ref-{i} img").wait_for()

    # a layout picked: one box per reference, where the layout puts them
    _choose_layout(page, "side by side")
    _wait_drawn(page, SIDE_BY_SIDE)
    assert _boxes_text(page) == SIDE_BY_SIDE

    # drag box 1 up a quarter; pull box 2's corner in by an eighth
    frame = page.locator("#compose-canvas-frame").bounding_box()
    side = frame["width"]
    boxes = page.locator("#compose-canvas-frame .seedling-box")
    one = boxes.nth(0).bounding_box()
    _drag(page, (one["x"] + one["width"] / 2, one["y"] + one["height"] / 2), (0, -side / 4))
    # the drag rewrites the text, the canvas redraws from it and the server answers with the
    # layout 'custom': grab the next handle only once all of that has settled, or it may be
    # measured in the instant its box is replaced (bounding_box() is None then)
    _wait_drawn(page, MOVED)
    page.wait_for_function("() => document.querySelector('#compose-layout input').value === 'custom'")
    _wait_drawn(page, MOVED)
    handle = _settled_box(page, boxes.nth(1).locator(".seedling-handle"))
    _drag(
        page, (handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2), (-side / 8, -side / 8)
    )
    _wait_drawn(page, PLACED)
    page.wait_for_function("() => document.querySelector('#compose-layout input').value === 'custom'")
    assert _boxes_text(page) == PLACED
    page.screenshot(path=ARTIFACTS / "compose-boxes-1-placed.png", full_page=True)

    page.locator("#compose-prompt textarea").fill("the red one and the blue one")
    page.locator("#compose-run").click()
    _wait_text(page, "compose-status", "done")
    page.locator("#compose-gallery img").first.wait_for()
    with open_stores(app.data_dir) as stores:
        job = max(stores.jobs.list(limit=50), key=lambda j: j.id)
        (image,) = [im for im in stores.images.all() if im.job_id == job.id]
    assert job.kind == "compose" and job.spec["boxes"] == PLACED
    page.close()

    # History's Reuse parameters, on a fresh page: the Compose tab shows the boxes it was made with
    page = _new_page(browser, app)
    page.get_by_role("tab", name="History").click()
    page.locator("#history-refresh").click()
    page.locator(f"#history-gallery button.thumbnail-item:has-text('#{image.id} ')").click()
    _wait_text(page, "history-details", "boxes: 0 0 0.5 0.5; 0.5 0.25 0.875 0.625")
    page.locator("#history-reuse").click()
    _wait_text(page, "compose-status", f"Restored the parameters of image #{image.id} (compose)")
    _wait_drawn(page, PLACED)
    assert page.locator("#compose-layout input").input_value() == "custom"
    assert page.locator("#compose-prompt textarea").input_value() == "the red one and the blue one"
    assert page.locator("#compose-ref-0 img").count() == 1 and page.locator("#compose-ref-1 img").count() == 1
    page.screenshot(path=ARTIFACTS / "compose-boxes-2-reused.png", full_page=True)

    # free again, then the result's PNG dropped on Compose: the boxes are back
    _choose_layout(page, "free (no boxes)")
    page.wait_for_function("() => !document.querySelector('#compose-canvas-frame .seedling-box')")
    assert _boxes_text(page) is None
    page.locator("#compose-png-drop input[type=file]").set_input_files(
        str(app.data_dir / "files" / image.file_path)
    )
    _wait_text(page, "compose-status", "Restored parameters of a compose image")
    _wait_drawn(page, PLACED)
    assert page.locator("#compose-layout input").input_value() == "custom"
    assert _boxes_text(page) == PLACED
    page.screenshot(path=ARTIFACTS / "compose-boxes-3-png-restored.png", full_page=True)
    page.close()
