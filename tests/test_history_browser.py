"""History a designer works from, in a real browser (Playwright driving Debian's Chromium,
headless) against `python app.py`: the prompt on hover, delete then Undo, favourites, boards, and
the trash (restore, empty after a confirmation). The history is seeded before the app starts, so
no test waits for the model; one app and one browser serve the module, each test its own page and
its own pictures. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from seedling.storage.db import Database
from seedling.storage.files import FileStore
from seedling.storage.images_common import ImageNotFound, ImageRecord, NewImage
from seedling.storage.images_sqlite import SqliteImageStore
from seedling.storage.migrations import migrate
from tests.conftest import AppProcess
from tests.test_ui_browser import ARTIFACTS, TIMEOUT_MS, _wait_text
from tests.test_ui_browser import pytestmark as browser_marks
from tests.test_ui_loop_browser import browser  # noqa: F401 - the module's one Chromium

pytestmark = browser_marks

LONG_PROMPT = (
    "a white lighthouse on a cliff at dusk, waves breaking on dark rocks below, a single gull "
    "over the water and the first stars above"
)
PROMPTS = {
    "hover": LONG_PROMPT,
    "undo": "a red fox asleep in the snow",
    "favourite": "an owl on a birch branch",
    "board_a": "a blue whale under the waves",
    "board_b": "a whale shark near the reef",
    "outside_board": "a whale of a time at the fair",
    "trash": "a paper boat on a puddle",
    "forever": "a paper kite in the wind",
}


def _seed(data_dir) -> dict[str, int]:
    """Pictures in the history before the app starts, as finished jobs would have left them."""
    db = Database(data_dir / "history.db")
    migrate(db)
    files = FileStore(data_dir / "files")
    images = SqliteImageStore(db)
    ids = {}
    for k, (key, prompt) in enumerate(PROMPTS.items()):
        stored = files.save_png(Image.new("RGB", (128, 128), (30 * k % 256, 90, 160)), "images", prompt)
        (record,) = images.add([NewImage.from_stored(stored, "output", task="t2i", prompt=prompt)])
        ids[key] = record.id
    db.dispose()
    return ids


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, tiny_model_dir):
    data_dir = tmp_path_factory.mktemp("history") / "data"
    data_dir.mkdir()
    ids = _seed(data_dir)
    app = AppProcess(data_dir, tiny_model_dir).start()
    yield app, ids
    app.stop()


@pytest.fixture
def page(seeded, browser):  # noqa: F811 - the imported fixture, by name
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(seeded[0].url)
    page.get_by_role("tab", name="History").click()
    # opening the tab lists the history; a search sent before that answer arrives could be
    # overwritten by it
    page.locator("#history-gallery img").first.wait_for()
    yield page
    page.close()


def _stored(app, image_id: int) -> ImageRecord:
    """The image's row as the app's database holds it now."""
    db = Database(app.data_dir / "history.db")
    try:
        return SqliteImageStore(db).get(image_id)
    finally:
        db.dispose()


def _captions(page) -> list[str]:
    """The captions of the History gallery's thumbnails (their pictures' alt text), in order."""
    return page.evaluate("() => [...document.querySelectorAll('#history-gallery img')].map(i => i.alt)")


def _wait_gallery(page, words: list[str]) -> None:
    """Until the gallery shows exactly one thumbnail per prompt in `words` (each a substring)."""
    page.wait_for_function(
        "words => { const t = [...document.querySelectorAll('#history-gallery img')].map(i => i.alt);"
        " return t.length === words.length && words.every(w => t.some(x => x.includes(w))); }",
        arg=words,
    )


def _search(page, text: str) -> None:
    box = page.locator("#history-search textarea, #history-search input").first
    box.fill(text)
    box.press("Enter")


def _select(page, text: str, image_id: int) -> None:
    """Search for `text` (one picture) and open it."""
    _search(page, text)
    page.locator(f"#history-gallery img[alt*='#{image_id} ·']").first.click()
    _wait_text(page, "history-details", f"Image #{image_id}")


def _choose(page, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=re.compile(re.escape(option))).click()


def test_hovering_a_thumbnail_shows_its_whole_prompt(page, seeded):
    _, ids = seeded
    _search(page, "lighthouse")
    _wait_gallery(page, ["lighthouse"])
    label = page.locator("#history-gallery .caption-label").first
    assert label.inner_text().startswith(f"#{ids['hover']} · t2i: a white lighthouse")  # not only "#n · t2i"
    assert label.evaluate("e => e.scrollWidth > e.clientWidth")  # at rest the long prompt is cut off
    page.locator("#history-gallery img").first.hover()
    # the pointer's tooltip: the innermost hovered element with a title is the thumbnail's
    hovered = page.evaluate(
        "() => [...document.querySelectorAll(':hover')].map(e => e.title).filter(Boolean).pop()"
    )
    assert hovered == f"#{ids['hover']} · t2i: {LONG_PROMPT}"
    # and the label on the thumbnail wraps instead of cutting the line off
    page.wait_for_function("e => e.scrollWidth <= e.clientWidth", arg=label.element_handle())
    assert label.inner_text() == f"#{ids['hover']} · t2i: {LONG_PROMPT}"
    page.screenshot(path=ARTIFACTS / "history-hover.png", full_page=True)


def test_delete_moves_to_the_trash_and_undo_brings_it_back(page, seeded):
    _, ids = seeded
    _select(page, "red fox", ids["undo"])
    page.locator("#history-delete").click()
    _wait_text(page, "history-status", f"Moved image #{ids['undo']} to the trash")
    _wait_gallery(page, [])  # gone from the search it was found in
    page.locator("#history-undo").wait_for(state="visible")
    page.screenshot(path=ARTIFACTS / "history-deleted.png", full_page=True)
    page.locator("#history-undo").click()
    _wait_text(page, "history-status", f"Restored image #{ids['undo']}")
    _wait_gallery(page, ["red fox asleep"])
    _wait_text(page, "history-details", "a red fox asleep in the snow")  # open again, as before
    page.locator("#history-undo").wait_for(state="hidden")
    _search(page, "")
    page.wait_for_function(
        "id => [...document.querySelectorAll('#history-gallery img')].some(i => i.alt.includes('#' + id + ' ·'))",
        arg=ids["undo"],
    )
    restored = [c for c in _captions(page) if c.startswith(f"#{ids['undo']} ·")]
    assert restored == [f"#{ids['undo']} · t2i: a red fox asleep in the snow"]  # back once, as it was


def test_a_favourite_shows_under_the_favourites_filter(page, seeded):
    _, ids = seeded
    _select(page, "owl", ids["favourite"])
    assert page.locator("#history-fav").inner_text().startswith("☆")
    page.locator("#history-fav").click()
    page.wait_for_function("() => document.querySelector('#history-fav').innerText.startsWith('★')")
    _search(page, "")
    # the unfiltered listing has arrived before the filter is set (a late answer would replace it)
    page.wait_for_function("() => document.querySelectorAll('#history-gallery img').length > 1")
    page.locator("#history-fav-only input").check()
    _wait_gallery(page, ["owl on a birch"])
    assert _captions(page) == [f"★ #{ids['favourite']} · t2i: an owl on a birch branch"]
    page.screenshot(path=ARTIFACTS / "history-favourites.png", full_page=True)


def test_a_board_lists_its_images(page, seeded):
    _, ids = seeded
    page.locator("#history-board-name textarea, #history-board-name input").first.fill("Sea life")
    page.locator("#history-board-create").click()
    _wait_text(page, "history-status", "Created board “Sea life”")
    for key, words in (("board_a", "blue whale"), ("board_b", "whale shark")):
        _select(page, words, ids[key])
        page.locator("#history-board-add").click()
        _wait_text(page, "history-status", f"Image #{ids[key]} is on “Sea life”")
    _wait_text(page, "history-details", "Boards: Sea life")
    _search(page, "whale")
    _wait_gallery(page, ["blue whale", "whale shark", "whale of a time"])  # three whales in history
    _choose(page, "history-board-filter", "Sea life (2)")
    _wait_gallery(page, ["blue whale", "whale shark"])  # two of them on the board
    on_board = {int(c.split(" ·", 1)[0].lstrip("★ #")) for c in _captions(page)}
    assert on_board == {ids["board_a"], ids["board_b"]}
    page.screenshot(path=ARTIFACTS / "history-board.png", full_page=True)


def test_trash_view_restores_and_empties_only_after_a_confirmation(page, seeded):
    app, ids = seeded
    for key, words in (("trash", "paper boat"), ("forever", "paper kite")):
        _select(page, words, ids[key])
        page.locator("#history-delete").click()
        _wait_text(page, "history-status", f"Moved image #{ids[key]} to the trash")
    page.locator("#history-view").get_by_label("Trash").check()
    page.locator("#history-restore").wait_for(state="visible")
    _search(page, "paper")
    _wait_gallery(page, ["paper boat", "paper kite"])

    page.locator(f"#history-gallery img[alt*='#{ids['trash']} ·']").click()
    # the click's selection reaches the server before Restore reads it: a Restore handled first
    # finds nothing selected, says "Select an image first." in a toast and leaves the status as it
    # was (the likely cause of a CI timeout under two processes)
    _wait_text(page, "history-details", f"Image #{ids['trash']}")
    page.locator("#history-restore").click()
    _wait_text(page, "history-status", f"Restored image #{ids['trash']} to history")
    _wait_gallery(page, ["paper kite"])

    page.locator("#history-empty").click()
    _wait_text(page, "history-empty-question", "cannot be undone")
    page.locator("#history-empty-cancel").click()
    _wait_text(page, "history-status", "Nothing was deleted")
    _wait_gallery(page, ["paper kite"])  # still in the trash
    kite = app.data_dir / "files" / _stored(app, ids["forever"]).file_path
    assert kite.is_file()  # in the trash, the file stays
    page.locator("#history-empty").click()
    page.screenshot(path=ARTIFACTS / "history-empty-trash.png", full_page=True)
    page.locator("#history-empty-confirm").click()
    _wait_text(page, "history-status", "for good")
    _wait_gallery(page, [])

    page.locator("#history-view").get_by_label("History").check()
    _search(page, "paper")
    _wait_gallery(page, ["paper boat"])  # the restored one is back; the kite is gone for good
    assert not kite.exists()
    assert _stored(app, ids["trash"]).deleted_at is None
    with pytest.raises(ImageNotFound):
        _stored(app, ids["forever"])
