"""Real browser (Playwright driving Debian's Chromium, headless) against the app on localhost:
generate, find it in History, send it to Edit, edit it, see the lineage. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from storage.db import Database
from storage.images_sqlite import SqliteImageStore
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
