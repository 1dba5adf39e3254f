"""Issue 20, each result's actions and the tabs' restores, in a real browser (Playwright driving
Debian's Chromium, headless) against `python app.py`: what a person sees."""

from __future__ import annotations

import re

import pytest

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
    box.press("Control+Enter")
    _wait_text(page, "gen-status", "done")
    return re.search(r"seed (\d+)", page.locator("#gen-status").inner_text()).group(1)


def test_ctrl_enter_runs_and_the_download_is_named_by_prompt_and_seed(page):
    seed = _generate_with_ctrl_enter(page, "red circle top left")
    page.locator("#gen-gallery img").first.wait_for()
    page.wait_for_function(
        "() => document.querySelector('#gen-download') && !document.querySelector('#gen-download').disabled"
    )
    with page.expect_download() as info:
        page.locator("#gen-download").click()
    assert info.value.suggested_filename == f"red-circle-top-left_seed{seed}.png"
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
    radio = page.locator("#gen-size")
    labels = radio.locator("label").all_inner_texts()
    assert labels and all(re.search(r"\((\d+)x(\d+)\)", text) for text in labels)
    sides = [tuple(map(int, re.search(r"\((\d+)x(\d+)\)", t).groups())) for t in labels]
    assert all(min(size) == 128 for size in sides), sides  # the model draws 128 px
    assert "Size (the model draws 128 px)" in page.locator("#gen-size").inner_text()
    assert not any(256 in size or 512 in size for size in sides)
