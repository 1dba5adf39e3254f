"""The right-hand column of every generation tab: status, the tab's jobs in line, the live
preview, the results, and what a person can do with the selected result.

Actions come from one table: an action that needs a task is offered only when that task is one of
the studio's (a job kind with a tab: task_table.STUDIO_TASKS). The table's "upscale" task is
model-side only so far, so there is no Upscale button yet.
Use as edit source / Add to compose reach into other tabs and are wired in blocks.py.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from gradio import utils as gradio_utils

from seedling.backend.services import Services
from seedling.backend.specs import JobSpec, spec_from_params
from seedling.model.task_table import STUDIO_TASKS
from seedling.storage.images_common import ImageRecord
from seedling.ui.common import USER_ERRORS, Gallery, TabJobs, resolve_seed, user_error


@dataclass(frozen=True)
class ResultAction:
    name: str  # also the button's elem id suffix
    label: str
    task: str | None  # the task it needs among the studio's tasks (a job kind); None: any model


RESULT_ACTIONS = (
    ResultAction("use-edit", "Use as edit source", "edit"),
    ResultAction("use-compose", "Add to compose", "compose"),
    ResultAction("vary", "Vary (new seed)", None),
    ResultAction("upscale", "Upscale", "upscale"),
)


def offered_actions() -> list[ResultAction]:
    """The table's "upscale" task is model-side only so far (no job kind): no Upscale button yet."""
    return [a for a in RESULT_ACTIONS if a.task is None or a.task in STUDIO_TASKS]


@dataclass
class Results:
    status: gr.Markdown
    preview: gr.Image
    gallery: gr.Gallery
    jobs: TabJobs
    job_id: gr.State
    selected: gr.State  # index of the selected result in the gallery
    download: gr.DownloadButton
    compare: gr.ImageSlider | None
    actions: dict[str, gr.Button] = field(default_factory=dict)
    shown: list = field(default_factory=list)  # what `show` fills: the download (and before/after)
    show: Callable | None = None  # (gallery value, index) -> the selected result's download (, compare)

    def after_run(self, event) -> None:
        """Once a job's handler has finished, the first new result is the selected one, ready to
        download (and compare). Chained on the handler's event because a Gallery that a handler
        fills fires no change event in Gradio 6 (only a person's upload or delete does)."""

        def first(gallery_value):
            shown = self.show(gallery_value, 0)
            return (0, *(shown if isinstance(shown, tuple) else (shown,)))

        event.success(
            first, [self.gallery], [self.selected, *self.shown], api_visibility="private", queue=False
        )

    @property
    def run_outputs(self) -> list:
        """What a job's handler streams into: (job id, status, preview, gallery, the tab's jobs)."""
        return [self.job_id, self.status, self.preview, self.gallery, self.jobs.state]


def file_name(prompt: str | None, seed: int | None, words: int = 6) -> str:
    """A readable download name: the prompt's first words and the seed, e.g.
    'red-circle-top-left_seed123.png' (letters and digits only, so any file system takes it)."""
    parts = re.findall(r"[a-z0-9]+", (prompt or "").lower())[:words]
    stem = "-".join(parts) or "image"
    return f"{stem}_seed{seed}.png" if seed is not None else f"{stem}.png"


MAX_DOWNLOAD_COPIES = 64  # readable copies kept; the least recently offered go first


def downloads_folder() -> Path:
    """Where readable copies live: inside Gradio's upload folder, which the app puts in its data
    folder (`serve_only_from`), so they are served from there and go with the data folder."""
    return Path(gradio_utils.get_upload_folder()) / "seedling-downloads"


def readable_copy(services: Services, image: ImageRecord, root: Path | None = None) -> Path:
    """The image's file under its readable name, in a folder of its own (named by its hash).
    Gradio serves the copy from its own cache once the handler returns it, so only the most
    recently offered MAX_DOWNLOAD_COPIES are kept: the folder stays bounded however long the app
    runs."""
    root = root or downloads_folder()
    folder = root / image.sha256[:32]
    target = folder / file_name(image.prompt, image.seed)
    if target.exists():
        os.utime(folder)  # offered again: the most recent, the last to be removed
    else:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / (target.name + ".part")
        shutil.copyfile(services.history.path(image), partial)
        partial.replace(target)
        _keep_newest(root, MAX_DOWNLOAD_COPIES)
    return target


def _keep_newest(root: Path, keep: int) -> None:
    folders = []
    for folder in root.iterdir():
        try:
            folders.append((folder.stat().st_mtime, folder))
        except OSError:  # removed meanwhile by another request's pruning
            continue
    folders.sort(reverse=True)
    for _, folder in folders[keep:]:
        shutil.rmtree(folder, ignore_errors=True)


def selected_path(gallery_value, index) -> str | None:
    """The file of the selected result (the first when none was picked) shown in a gallery."""
    if not gallery_value:
        return None
    index = index if isinstance(index, int) and 0 <= index < len(gallery_value) else 0
    item = gallery_value[index]
    return str(item[0] if isinstance(item, (tuple, list)) else item)


def selected_image(services: Services, gallery_value, index) -> ImageRecord:
    """The history row of the selected result (found by its pixels), or gr.Error with what to do."""
    path = selected_path(gallery_value, index)
    if path is None:
        raise gr.Error("There is no result yet: run the tab first.")
    record = services.history.find_picture(path)
    if record is None:
        raise gr.Error("This result is no longer in History (it was deleted).")
    return record


def source_of(services: Services, image: ImageRecord) -> str | None:
    """The edit source of an image (its 'source' parent), as a path; None for other images."""
    parents = services.history.lineage(image.id).parents
    source = next((r.image for r in parents if r.role == "source"), None)
    return str(services.history.path(source)) if source is not None else None


def vary_spec(services: Services, image: ImageRecord) -> JobSpec:
    """The job that made `image` again, with a new random seed."""
    if image.job_id is None:
        raise gr.Error("This image was uploaded, not generated: there is nothing to vary.")
    try:
        return spec_from_params(image.params, seed=resolve_seed(-1))
    except USER_ERRORS as err:
        raise user_error(err) from None


def results_column(services: Services, prefix: str, compare: bool = False, **gallery_kwargs) -> Results:
    """The column and its events inside the tab (selection, download, compare); the actions'
    events are wired by the tab (vary) and blocks.py (the cross-tab ones)."""
    with gr.Column(scale=1):
        status = gr.Markdown("", elem_id=f"{prefix}-status")
        jobs = TabJobs(services, prefix)
        jobs.status_output = status
        preview = gr.Image(label="Preview", interactive=False, height=160)
        gallery = Gallery(
            label="Results", **({"columns": 4, "height": 320} | gallery_kwargs), elem_id=f"{prefix}-gallery"
        )
        with gr.Row():
            actions = {
                a.name: gr.Button(a.label, size="sm", elem_id=f"{prefix}-{a.name}") for a in offered_actions()
            }
            download = gr.DownloadButton("Download", size="sm", elem_id=f"{prefix}-download")
        slider = (
            gr.ImageSlider(
                label="Before / after (drag)",
                type="filepath",
                interactive=False,
                height=260,
                elem_id=f"{prefix}-compare",
            )
            if compare
            else None
        )
    results = Results(status, preview, gallery, jobs, gr.State(None), gr.State(0), download, slider, actions)

    def show(gallery_value, index):
        """The selected result's download (under its readable name) and, for edits, before/after."""
        path = selected_path(gallery_value, index)
        image = services.history.find_picture(path) if path else None
        if image is None:
            button = gr.DownloadButton("Download", value=None)
            return (button, None) if compare else button
        copy = readable_copy(services, image)
        # the name on the button: a person sees what the file will be called before saving it
        button = gr.DownloadButton(f"Download {copy.name}", value=str(copy))
        if not compare:
            return button
        source = source_of(services, image)
        return button, ((source, str(services.history.path(image))) if source else None)

    results.shown = [download, slider] if compare else [download]
    results.show = show

    def pick(evt: gr.SelectData):
        return evt.index

    gallery.select(pick, None, results.selected, api_visibility="private", queue=False).then(
        show, [gallery, results.selected], results.shown, api_visibility="private", queue=False
    )
    return results
