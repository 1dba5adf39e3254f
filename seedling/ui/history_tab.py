"""History tab: searchable gallery; a selected image shows its parameters and lineage, and can be
sent to Edit/Compose, reused, re-run, starred, put on boards or deleted (the cross-tab actions are
wired in blocks.py).

Delete moves the image to the trash and offers Undo at once; the Trash view restores images or,
after a confirmation, empties the trash (rows and files go for good). Thumbnails carry the prompt in
their caption, which Gradio's gallery also puts in each picture's title: hovering shows it whole."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from seedling.backend.errors import JobError
from seedling.backend.services import Services
from seedling.backend.specs import as_row_id
from seedling.storage.boards_common import BoardRecord
from seedling.storage.images_common import ImageQuery, ImageRecord, Relative
from seedling.ui.common import (
    PRIVATE,
    USER_ERRORS,
    Checkbox,
    Dropdown,
    Gallery,
    Radio,
    Textbox,
    user_error,
)

TASKS = ["all", "t2i", "edit", "inpaint", "compose", "style", "storyboard", "edges", "sketch", "colourise"]
DATES = ["any time", "today", "last 7 days", "last 30 days"]
ALL_ADAPTERS = "all adapters"
ALL_BOARDS = "all boards"
VIEWS = ["History", "Trash"]
CAPTION_PROMPT_CHARS = 300  # a thumbnail's title is a tooltip, not the place for a whole essay
THUMBNAILS = "#history-gallery, #history-parents, #history-children"

# Gradio's gallery puts a caption in each thumbnail's alt text and a one-line, cut-off label. On
# page load: a thumbnail of History's galleries that the pointer (or keyboard focus) reaches gets
# its caption as its title, the tooltip a browser shows, read at that moment so it always names
# the picture now in that place; and a hovered label wraps (scrolling within the cell when long).
HOVER_JS = f"""
() => {{
  const style = document.createElement('style');
  style.textContent = `:is({THUMBNAILS}) .thumbnail-item:hover .caption-label {{
    white-space: normal; max-width: calc(100% - 8px); max-height: calc(100% - 8px);
    overflow-y: auto; opacity: 1; }}`;
  document.head.appendChild(style);
  const title = event => {{
    const button = event.target.closest?.(`:is({THUMBNAILS}) .thumbnail-item`);
    const alt = button?.querySelector('img')?.alt;
    if (alt !== undefined && button.title !== alt) button.title = alt;
  }};
  document.addEventListener('pointerover', title);
  document.addEventListener('focusin', title);
}}
"""


@dataclass
class HistoryTab:
    query: list  # [text, task, date, adapter, favourites only, board, view]: inputs of every refresh
    gallery: gr.Gallery
    ids: gr.State
    selected_id: gr.State
    details: list  # outputs of `select`
    send_to_edit: gr.Button
    send_to_compose: gr.Button
    reuse: gr.Button
    rerun: gr.Button
    delete: gr.Button
    status: gr.Markdown
    preview: gr.Image
    adapter: gr.Dropdown
    search: Callable  # (*query) -> (gallery items, ids)
    adapter_choices: Callable  # () -> gr.Dropdown update


def _created_after(date: str) -> float | None:
    now = time.time()
    if date == "today":
        return dt.datetime.combine(dt.date.today(), dt.time()).timestamp()
    if date == "last 7 days":
        return now - 7 * 86400
    if date == "last 30 days":
        return now - 30 * 86400
    return None


def image_query(
    text: str | None,
    task: str | None,
    date: str | None,
    adapter: str | int | None,
    favourites_only: bool | None = False,
    board: str | int | None = ALL_BOARDS,
    view: str | None = "History",
) -> ImageQuery:
    try:
        adapter_id = (
            as_row_id(adapter, "the adapter filter") if adapter not in (None, "", ALL_ADAPTERS) else None
        )
        board_id = as_row_id(board, "the board filter") if board not in (None, "", ALL_BOARDS) else None
    except USER_ERRORS as err:
        raise user_error(err) from None
    trash = view == "Trash"
    return ImageQuery(
        text=(text or "").strip() or None,
        task=None if task in (None, "all") else task,
        created_after=_created_after(date or "any time"),
        adapter_id=adapter_id,
        favourites_only=bool(favourites_only),
        board_id=board_id,
        trash=trash,
        origin=None if trash else "output",  # a trashed upload must be restorable too
    )


def caption(image: ImageRecord, label: str | None = None) -> str:
    """A thumbnail's caption (and hover title): star, id, what it is, and the prompt."""
    text = f"{'★ ' if image.favourite else ''}#{image.id} · {label or image.task or image.origin}"
    prompt = " ".join(image.prompt.split())
    if len(prompt) > CAPTION_PROMPT_CHARS:
        prompt = prompt[: CAPTION_PROMPT_CHARS - 1] + "…"
    return f"{text}: {prompt}" if prompt else text


def history_items(services: Services, images: list[ImageRecord]) -> list[tuple[str, str]]:
    return [(str(services.history.path(im)), caption(im)) for im in images]


def lineage_items(services: Services, relatives: list[Relative]) -> list[tuple[str, str]]:
    return [(str(services.history.path(r.image)), caption(r.image, r.role)) for r in relatives]


def board_choices(boards: list[BoardRecord], everything: str | None = None) -> list:
    """Dropdown choices (label, board id as text), after `everything` when given."""
    return ([everything] if everything else []) + [(f"{b.name} ({b.image_count})", str(b.id)) for b in boards]


def favourite_label(image: ImageRecord | None) -> str:
    return "★ Favourite" if image is not None and image.favourite else "☆ Favourite"


def describe(image: ImageRecord) -> str:
    p = image.params
    lines = [
        f"**Image #{image.id}** · {image.task or image.origin} · {image.width}x{image.height}"
        + (f" · job {image.job_id}" if image.job_id else "")
    ]
    if image.prompt:
        lines.append(f"> {image.prompt}")
    if p.get("typed_prompt") is not None and p["typed_prompt"] != image.prompt:
        lines.append(f"typed (before prompt expansion): {p['typed_prompt']}")
    fields = [
        f"{label}: {p[key]}"
        for key, label in (
            ("seed", "seed"),
            ("steps", "steps"),
            ("guidance", "guidance"),
            ("image_guidance", "image guidance"),
            ("num_outputs", "outputs"),
            ("model", "model"),
        )
        if p.get(key) is not None
    ]
    if fields:
        lines.append(" · ".join(fields))
    if p.get("boxes"):
        lines.append(
            "boxes: "
            + "; ".join("free" if b is None else " ".join(f"{v:.3g}" for v in b) for b in p["boxes"])
        )
    if image.timings:
        lines.append("timings: " + ", ".join(f"{k} {v:.3f} s" for k, v in image.timings.items()))
    lines.append(f"sha256 `{image.sha256[:16]}…` · {image.file_size} bytes")
    if image.trashed:
        lines.append(f"In the trash since {dt.datetime.fromtimestamp(image.deleted_at):%Y-%m-%d %H:%M}")
    return "\n\n".join(lines)


def build(services: Services) -> HistoryTab:
    with gr.Row():
        text = Textbox(label="Search prompts", placeholder="fox snow", scale=3, elem_id="history-search")
        task = Dropdown(TASKS, value="all", label="Task", scale=1)
        date = Dropdown(DATES, value="any time", label="Date", scale=1)
        adapter = Dropdown([ALL_ADAPTERS], value=ALL_ADAPTERS, label="Adapter", scale=1)
        refresh = gr.Button("Search", scale=1, elem_id="history-refresh")
    with gr.Row(equal_height=True):
        favourites_only = Checkbox(False, label="★ Favourites only", scale=1, elem_id="history-fav-only")
        board = Dropdown(
            [ALL_BOARDS], value=ALL_BOARDS, label="Board", scale=2, elem_id="history-board-filter"
        )
        view = Radio(VIEWS, value="History", label="Show", scale=1, elem_id="history-view")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = Gallery(
                label="History", columns=6, height=460, allow_preview=False, elem_id="history-gallery"
            )
            with gr.Row(visible=False) as trash_row:
                empty = gr.Button("Empty trash…", variant="stop", elem_id="history-empty")
            with gr.Row(visible=False) as confirm_row:
                confirm_text = gr.Markdown("", elem_id="history-empty-question")
                confirm = gr.Button("Delete forever", variant="stop", elem_id="history-empty-confirm")
                keep = gr.Button("Cancel", elem_id="history-empty-cancel")
        with gr.Column(scale=2):
            image = gr.Image(label="Selected", interactive=False, height=200, elem_id="history-image")
            details = gr.Markdown("Select an image.", elem_id="history-details")
            with gr.Row():
                favourite = gr.Button("☆ Favourite", elem_id="history-fav")
                send_to_edit = gr.Button("Send to edit", elem_id="history-send-edit")
                send_to_compose = gr.Button("Send to compose", elem_id="history-send-compose")
                reuse = gr.Button("Reuse parameters", elem_id="history-reuse")
            with gr.Row():
                rerun = gr.Button("Re-run", elem_id="history-rerun")
                delete = gr.Button("Delete", variant="stop", elem_id="history-delete")
                restore = gr.Button("Restore", visible=False, elem_id="history-restore")
            with gr.Row(equal_height=True):
                status = gr.Markdown("", elem_id="history-status")
                undo = gr.Button("Undo", size="sm", scale=0, visible=False, elem_id="history-undo")
            with gr.Accordion("Boards", open=True):
                with gr.Row(equal_height=True):
                    board_pick = Dropdown(
                        [], value=None, label="Board", scale=2, elem_id="history-board-pick"
                    )
                    add_to_board = gr.Button("Add to board", scale=1, elem_id="history-board-add")
                    remove_from_board = gr.Button(
                        "Remove from board", scale=1, elem_id="history-board-remove"
                    )
                with gr.Row(equal_height=True):
                    board_name = Textbox(
                        label="New board", placeholder="mood: winter", scale=2, elem_id="history-board-name"
                    )
                    create_board = gr.Button("Create board", scale=1, elem_id="history-board-create")
            preview = gr.Image(label="Re-run preview", interactive=False, height=120, visible=True)
            parents = Gallery(
                label="Parents (click to open)",
                columns=4,
                height=140,
                allow_preview=False,
                elem_id="history-parents",
            )
            children = Gallery(
                label="Children (click to open)",
                columns=4,
                height=140,
                allow_preview=False,
                elem_id="history-children",
            )
    ids = gr.State([])
    parent_ids = gr.State([])
    child_ids = gr.State([])
    selected_id = gr.State(None)
    last_trashed = gr.State([])  # what Undo brings back
    query = [text, task, date, adapter, favourites_only, board, view]

    def search(text, task, date, adapter, favourites_only=False, board=ALL_BOARDS, view="History"):
        """Images matching a prompt search and filters, newest first (the trash: latest deleted first)."""
        found = services.history.search(image_query(text, task, date, adapter, favourites_only, board, view))
        return history_items(services, found), [im.id for im in found]

    def adapter_choices():
        choices = [ALL_ADAPTERS] + [(a.name, str(a.id)) for a in services.history.adapters()]
        return gr.Dropdown(choices=choices)

    def boards_update(shown=ALL_BOARDS, picked=None):
        """Both board lists from the database, keeping the boards chosen if they still exist."""
        boards = services.history.boards()
        known = {str(b.id) for b in boards}
        return (
            gr.Dropdown(
                choices=board_choices(boards, ALL_BOARDS), value=shown if shown in known else ALL_BOARDS
            ),
            gr.Dropdown(choices=board_choices(boards), value=picked if picked in known else None),
        )

    def select(image_id):
        nothing = (None, "Select an image.", [], [], [], [], None, favourite_label(None))
        if image_id is None:
            return nothing
        try:
            record = services.history.get(image_id)
        except JobError:
            return (None, f"Image #{image_id} no longer exists.", *nothing[2:])
        lineage = services.history.lineage(record.id)
        on_boards = services.history.boards_of(record.id)
        text = describe(record)
        if on_boards:
            text += "\n\nBoards: " + ", ".join(b.name for b in on_boards)
        return (
            str(services.history.path(record)),
            text,
            lineage_items(services, lineage.parents),
            [r.image.id for r in lineage.parents],
            lineage_items(services, lineage.children),
            [r.image.id for r in lineage.children],
            record.id,
            favourite_label(record),
        )

    detail_outputs = [image, details, parents, parent_ids, children, child_ids, selected_id, favourite]
    listing = [gallery, ids]

    def pick(id_list, evt: gr.SelectData):
        return select(id_list[evt.index] if evt.index is not None and evt.index < len(id_list) else None)

    refresh.click(search, query, listing, api_name="history_search")
    text.submit(search, query, listing, api_visibility=PRIVATE)
    for source, id_state in ((gallery, ids), (parents, parent_ids), (children, child_ids)):
        source.select(pick, id_state, detail_outputs, api_visibility=PRIVATE)
    gr.on(
        # .input, not .change, for the two the app also sets: reloading the board list is no search
        [task.change, date.change, adapter.change, favourites_only.input, board.input],
        search,
        query,
        listing,
        api_visibility=PRIVATE,
    )
    # triggers=None: also on every page load, so boards made since the app started are offered
    gr.on(None, lambda: boards_update(), None, [board, board_pick], api_visibility=PRIVATE)
    gr.on(None, None, None, None, js=HOVER_JS, api_visibility=PRIVATE)

    def selected(image_id) -> int:
        if image_id is None:
            raise gr.Error("Select an image first.")
        return image_id

    def act(action: Callable, *args):
        """Run a history action; a person-readable gr.Error for what a person can get wrong."""
        try:
            return action(*args)
        except USER_ERRORS as err:
            raise user_error(err) from None

    # --- favourites ---------------------------------------------------------------------------

    def toggle_favourite(image_id, *filters):
        record = act(services.history.get, selected(image_id))
        act(services.history.set_favourite, record.id, not record.favourite)
        return (*search(*filters), *select(record.id))

    favourite.click(
        toggle_favourite, [selected_id, *query], [*listing, *detail_outputs], api_visibility=PRIVATE
    )

    # --- trash: delete, undo, restore, empty ----------------------------------------------------

    def show_view(view_name, *filters):
        in_trash = view_name == "Trash"
        return (
            *search(*filters),
            *select(None),
            gr.Button(visible=not in_trash),  # delete
            gr.Button(visible=in_trash),  # restore
            gr.Row(visible=in_trash),  # empty trash
            gr.Row(visible=False),  # its confirmation
            gr.Button(visible=False),  # undo
            "",
        )

    view.change(
        show_view,
        [view, *query],
        [*listing, *detail_outputs, delete, restore, trash_row, confirm_row, undo, status],
        api_visibility=PRIVATE,
    )

    def delete_selected(image_id, *filters):
        (record,) = act(services.history.trash, selected(image_id))
        said = f"Moved image #{record.id} to the trash."
        return (*search(*filters), *select(None), said, gr.Button(visible=True), [record.id])

    def undo_delete(trashed, *filters):
        if not trashed:
            raise gr.Error("Nothing to undo.")
        restored = act(services.history.restore, trashed)
        said = "Restored " + ", ".join(f"image #{im.id}" for im in restored) + "."
        return (*search(*filters), *select(restored[0].id), said, gr.Button(visible=False), [])

    undo_outputs = [*listing, *detail_outputs, status, undo, last_trashed]
    for button, handler, what in ((delete, delete_selected, selected_id), (undo, undo_delete, last_trashed)):
        button.click(handler, [what, *query], undo_outputs, api_visibility=PRIVATE)

    def restore_selected(image_id, *filters):
        (record,) = act(services.history.restore, selected(image_id))
        return (*search(*filters), *select(None), f"Restored image #{record.id} to history.")

    restore.click(
        restore_selected, [selected_id, *query], [*listing, *detail_outputs, status], api_visibility=PRIVATE
    )

    def ask_to_empty():
        count = len(services.history.trashed(limit=100_000))
        if not count:
            return gr.Row(visible=False), "", "The trash is empty."
        question = (
            f"Delete the {count} image(s) in the trash and their files for good? This cannot be undone."
        )
        return gr.Row(visible=True), question, ""

    empty.click(ask_to_empty, None, [confirm_row, confirm_text, status], api_visibility=PRIVATE)
    keep.click(
        lambda: (gr.Row(visible=False), "Nothing was deleted."),
        None,
        [confirm_row, status],
        api_visibility=PRIVATE,
    )

    def empty_trash(*filters):
        removed, kept = act(services.history.empty_trash)
        said = f"Deleted {len(removed)} image(s) for good."
        if kept:
            ids_kept = ", ".join(f"#{im.id}" for im in kept)
            said += f" {ids_kept} stay in the trash until the queued jobs that use them are done."
        return (*search(*filters), *select(None), gr.Row(visible=False), said, gr.Button(visible=False), [])

    confirm.click(
        empty_trash,
        query,
        [*listing, *detail_outputs, confirm_row, status, undo, last_trashed],
        api_visibility=PRIVATE,
    )

    # --- boards -------------------------------------------------------------------------------

    def new_board(name, shown):
        made = act(services.history.create_board, name)
        return (*boards_update(shown, str(made.id)), "", f"Created board “{made.name}”.")

    gr.on(
        [create_board.click, board_name.submit],
        new_board,
        [board_name, board],
        [board, board_pick, board_name, status],
        api_visibility=PRIVATE,
    )

    def board_change(add: bool):
        def change(image_id, picked, *filters):
            image_id = selected(image_id)
            if picked in (None, ""):
                raise gr.Error("Choose a board (or create one) first.")
            target = act(services.history.board, picked)
            if add:
                act(services.history.add_to_board, target.id, [image_id])
                said = f"Image #{image_id} is on “{target.name}”."
            else:
                changed = act(services.history.remove_from_board, target.id, [image_id])
                took = "Took image #{} off “{}”." if changed else "Image #{} was not on “{}”."
                said = took.format(image_id, target.name)
            shown = filters[query.index(board)]  # the board being viewed stays in view
            return (*search(*filters), *select(image_id), *boards_update(shown, str(target.id)), said)

        return change

    for button, add in ((add_to_board, True), (remove_from_board, False)):
        button.click(
            board_change(add),
            [selected_id, board_pick, *query],
            [*listing, *detail_outputs, board, board_pick, status],
            api_visibility=PRIVATE,
        )

    tab = HistoryTab(
        query=query,
        gallery=gallery,
        ids=ids,
        selected_id=selected_id,
        details=detail_outputs,
        send_to_edit=send_to_edit,
        send_to_compose=send_to_compose,
        reuse=reuse,
        rerun=rerun,
        delete=delete,
        status=status,
        preview=preview,
        adapter=adapter,
        search=search,
        adapter_choices=adapter_choices,
    )
    return tab
