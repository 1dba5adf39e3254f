"""History tab: searchable gallery; a selected image shows its parameters and lineage, and can be
sent to Edit/Compose, reused, re-run or deleted (the cross-tab actions are wired in blocks.py)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from seedling.backend.errors import JobError
from seedling.backend.services import Services
from seedling.backend.specs import as_row_id
from seedling.storage.images_common import ImageQuery, ImageRecord
from seedling.ui.common import (
    PRIVATE,
    USER_ERRORS,
    Dropdown,
    Gallery,
    Textbox,
    gallery_items,
    relative_items,
    user_error,
)

TASKS = ["all", "t2i", "edit", "inpaint", "compose", "style", "storyboard"]
DATES = ["any time", "today", "last 7 days", "last 30 days"]
ALL_ADAPTERS = "all adapters"


@dataclass
class HistoryTab:
    query: list  # [text, task, date, adapter]: the filters, inputs of every refresh
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
    text: str | None, task: str | None, date: str | None, adapter: str | int | None
) -> ImageQuery:
    try:
        adapter_id = (
            as_row_id(adapter, "the adapter filter") if adapter not in (None, "", ALL_ADAPTERS) else None
        )
    except USER_ERRORS as err:
        raise user_error(err) from None
    return ImageQuery(
        text=(text or "").strip() or None,
        task=None if task in (None, "all") else task,
        created_after=_created_after(date or "any time"),
        adapter_id=adapter_id,
    )


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
    if image.timings:
        lines.append("timings: " + ", ".join(f"{k} {v:.3f} s" for k, v in image.timings.items()))
    lines.append(f"sha256 `{image.sha256[:16]}…` · {image.file_size} bytes")
    return "\n\n".join(lines)


def build(services: Services) -> HistoryTab:
    with gr.Row():
        text = Textbox(label="Search prompts", placeholder="fox snow", scale=3, elem_id="history-search")
        task = Dropdown(TASKS, value="all", label="Task", scale=1)
        date = Dropdown(DATES, value="any time", label="Date", scale=1)
        adapter = Dropdown([ALL_ADAPTERS], value=ALL_ADAPTERS, label="Adapter", scale=1)
        refresh = gr.Button("Search", scale=1, elem_id="history-refresh")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = Gallery(
                label="History", columns=6, height=460, allow_preview=False, elem_id="history-gallery"
            )
        with gr.Column(scale=2):
            image = gr.Image(label="Selected", interactive=False, height=200, elem_id="history-image")
            details = gr.Markdown("Select an image.", elem_id="history-details")
            with gr.Row():
                send_to_edit = gr.Button("Send to edit", elem_id="history-send-edit")
                send_to_compose = gr.Button("Send to compose", elem_id="history-send-compose")
                reuse = gr.Button("Reuse parameters", elem_id="history-reuse")
            with gr.Row():
                rerun = gr.Button("Re-run", elem_id="history-rerun")
                delete = gr.Button("Delete", variant="stop", elem_id="history-delete")
            status = gr.Markdown("", elem_id="history-status")
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
    query = [text, task, date, adapter]

    def search(text, task, date, adapter):
        """Images matching a prompt search and filters, newest first."""
        found = services.history.search(image_query(text, task, date, adapter))
        return gallery_items(services, found), [im.id for im in found]

    def adapter_choices():
        choices = [ALL_ADAPTERS] + [(a.name, str(a.id)) for a in services.history.adapters()]
        return gr.Dropdown(choices=choices)

    def select(image_id):
        if image_id is None:
            return None, "Select an image.", [], [], [], [], None
        try:
            record = services.history.get(image_id)
        except JobError:
            return None, f"Image #{image_id} no longer exists.", [], [], [], [], None
        lineage = services.history.lineage(record.id)
        return (
            str(services.history.path(record)),
            describe(record),
            relative_items(services, lineage.parents),
            [r.image.id for r in lineage.parents],
            relative_items(services, lineage.children),
            [r.image.id for r in lineage.children],
            record.id,
        )

    detail_outputs = [image, details, parents, parent_ids, children, child_ids, selected_id]

    def pick(id_list, evt: gr.SelectData):
        return select(id_list[evt.index] if evt.index is not None and evt.index < len(id_list) else None)

    refresh.click(search, query, [gallery, ids], api_name="history_search")
    text.submit(search, query, [gallery, ids], api_visibility=PRIVATE)
    for source, id_state in ((gallery, ids), (parents, parent_ids), (children, child_ids)):
        source.select(pick, id_state, detail_outputs, api_visibility=PRIVATE)
    gr.on([task.change, date.change, adapter.change], search, query, [gallery, ids], api_visibility=PRIVATE)

    def delete_selected(image_id, text, task, date, adapter):
        if image_id is None:
            raise gr.Error("Select an image to delete.")
        try:
            services.history.delete(image_id)
        except USER_ERRORS as err:
            raise user_error(err) from None
        return (*search(text, task, date, adapter), *select(None), f"Deleted image #{image_id}.")

    delete.click(
        delete_selected,
        [selected_id, *query],
        [gallery, ids, *detail_outputs, status],
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
