"""Real browser (Playwright driving Debian's Chromium, headless) against the app on localhost:
generate, find it in History, send it to Edit, edit it, see the lineage. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from seedling.storage.db import Database
from seedling.storage.images_sqlite import SqliteImageStore
from tests.conftest import REPO_ROOT, AppProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
TIMEOUT_MS = 120_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="playwright is not installed (pip install playwright; no browser download needed)",
    ),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (apt-get install chromium)"
    ),
]


def _wait_text(page, elem_id: str, text: str) -> None:
    page.wait_for_function(
        "([id, text]) => (document.getElementById(id)?.innerText || '').includes(text)",
        arg=[elem_id, text],
        timeout=TIMEOUT_MS,
    )


def _shot(page, name: str, gallery_id: str) -> None:
    """Full-page screenshot once the gallery's thumbnails have loaded (they load lazily)."""
    page.locator(f"#{gallery_id} img").first.scroll_into_view_if_needed()
    page.wait_for_function(
        "id => [...document.querySelectorAll('#' + id + ' img')].every(i => i.complete && i.naturalWidth > 0)",
        arg=gallery_id,
        timeout=TIMEOUT_MS,
    )
    page.screenshot(path=ARTIFACTS / name, full_page=True)


def test_generate_history_send_to_edit_lineage(tmp_path, tiny_model_dir):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    app = AppProcess(tmp_path / "data", tiny_model_dir).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app.url)

            # 1. generate
            page.locator("#gen-prompt textarea").fill("a red fox in the snow")
            page.locator("#gen-run").click()
            _wait_text(page, "gen-status", "done")
            _shot(page, "1-generate.png", "gen-gallery")

            # 2. it appears in History; select it
            page.get_by_role("tab", name="History").click()
            page.locator("#history-gallery button.thumbnail-item").first.click()
            _wait_text(page, "history-details", "Image #1")
            _wait_text(page, "history-details", "a red fox in the snow")
            _shot(page, "2-history.png", "history-gallery")

            # 3. send to Edit, run an instruction edit
            page.locator("#history-send-edit").click()
            page.locator("#edit-instruction textarea").wait_for(state="visible")
            page.wait_for_timeout(1000)  # the editor loads its background
            page.locator("#edit-instruction textarea").fill("make the fox blue")
            page.locator("#edit-run").click()
            _wait_text(page, "edit-status", "done")
            _shot(page, "3-edit.png", "edit-gallery")

            # 4. the edit shows its source in History's lineage
            page.get_by_role("tab", name="History").click()
            page.locator("#history-refresh").click()
            page.locator("#history-gallery button.thumbnail-item").nth(1).wait_for()
            page.locator("#history-gallery button.thumbnail-item").first.click()  # newest first
            _wait_text(page, "history-details", "make the fox blue")
            page.locator("#history-parents img").first.wait_for()
            _wait_text(page, "history-parents", "#1 · source")
            _shot(page, "4-lineage.png", "history-parents")

            # ...and the parent is clickable: it opens the source, whose child is the edit
            page.locator("#history-parents button.thumbnail-item").first.click()
            _wait_text(page, "history-details", "Image #1")
            _wait_text(page, "history-children", "source")
            _shot(page, "5-parent.png", "history-children")
            browser.close()
    finally:
        app.stop()

    db = Database(app.data_dir / "history.db")
    images = SqliteImageStore(db)
    edit = next(im for im in images.all() if im.task == "edit")
    assert [(r.image.id, r.role) for r in images.parents(edit.id)] == [(1, "source")]
    db.dispose()


@pytest.mark.slow  # ~40 s; test_finetune_backend covers the job and the adapter in the default run
def test_finetune_tab_trains_an_adapter_that_generate_can_use(tmp_path, tiny_model_dir):
    """Upload pictures with .txt sidecars, train a few steps, watch the loss curve and samples,
    then pick the new adapter on the Generate tab."""
    import re

    from PIL import Image, ImageDraw
    from playwright.sync_api import sync_playwright

    from seedling.storage.adapters_sqlite import SqliteAdapterStore

    ARTIFACTS.mkdir(exist_ok=True)
    upload = []
    for i in range(4):
        im = Image.new("RGB", (96, 96), (250, 210, 20 + 40 * i))
        ImageDraw.Draw(im).ellipse((16, 16, 80, 80), fill=(20, 30, 60), outline=(0, 0, 0), width=6)
        im.save(tmp_path / f"stamp{i}.png")
        (tmp_path / f"stamp{i}.txt").write_text(f"a navy dot number {i}")
        upload += [str(tmp_path / f"stamp{i}.png"), str(tmp_path / f"stamp{i}.txt")]
    app = AppProcess(tmp_path / "data", tiny_model_dir).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app.url)

            # 1. upload: the table fills with the sidecar captions
            page.get_by_role("tab", name="Fine-tune").click()
            page.locator("#ft-files input[type=file]").set_input_files(upload)
            _wait_text(page, "ft-table", "a navy dot number 3")
            page.locator("#ft-name input, #ft-name textarea").first.fill("browser-style")

            # 2. a short run: 6 steps, samples every 3
            page.get_by_text("Training settings").click()
            page.locator("#ft-steps input[type=number]").wait_for(state="visible")
            page.wait_for_timeout(500)  # the accordion finishes opening before its inputs take values
            for elem_id, value in (("ft-steps", "10"), ("ft-batch", "2"), ("ft-sample-every", "5")):
                box = page.locator(f"#{elem_id} input[type=number]")
                box.fill(value)
                box.press("Enter")
                page.wait_for_function(
                    "([id, v]) => document.querySelector('#' + id + ' input[type=number]').value === v",
                    arg=[elem_id, value],
                )
            page.locator("#ft-run").click()
            _wait_text(page, "ft-status", "done")
            _wait_text(page, "ft-sample-caption", "Samples at step 10")
            page.locator("#ft-samples img").first.wait_for()
            page.screenshot(path=ARTIFACTS / "6-finetune.png", full_page=True)

            # 3. the adapter is offered on the Generate tab
            page.get_by_role("tab", name="Generate").click()
            page.locator("#gen-prompt textarea").fill("a navy dot")
            page.locator("#gen-adapters input").click()
            page.get_by_role("option", name=re.compile("browser-style")).click()
            page.locator("#gen-prompt textarea").click()  # close the dropdown
            page.locator("#gen-run").click()
            _wait_text(page, "gen-status", "done")
            _shot(page, "7-generate-with-adapter.png", "gen-gallery")
            browser.close()
    finally:
        app.stop()

    db = Database(app.data_dir / "history.db")
    (adapter,) = SqliteAdapterStore(db).list()
    assert adapter.name == "browser-style" and len(adapter.data) == 4 and adapter.metrics["steps"] == 10
    (image,) = [im for im in SqliteImageStore(db).all() if im.origin == "output"]
    assert image.adapter_id == adapter.id and image.params["adapter_names"] == ["browser-style"]
    db.dispose()
