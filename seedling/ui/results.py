"""The right-hand column of every generation tab: status, the tab's jobs in line, the live
preview, the results, and what a person can do with the selected result.

Actions come from one table: an action that needs a task is offered only when the model's task
table has it (so "Upscale" appears once the table lists an upscale task, and not before).
Use as edit source / Add to compose reach into other tabs and are wired in blocks.py.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from seedling.backend.services import Services
from seedling.backend.specs import JobSpec, spec_from_params
from seedling.model.task_table import TASKS
from seedling.storage.images_common import ImageRecord
from seedling.ui.common import USER_ERRORS, Gallery, TabJobs, resolve_seed, user_error


@dataclass(frozen=True)
class ResultAction:
    name: str  # also the button's elem id suffix
    label: str
    task: str | None  # the task it needs in the model's task table; None: any model


RESULT_ACTIONS = (
    ResultAction("use-edit", "Use as edit source", "edit"),
    ResultAction("use-compose", "Add to compose", "compose"),
    ResultAction("vary", "Vary (new seed)", None),
    ResultAction("upscale", "Upscale", "upscale"),
)


def offered_actions() -> list[ResultAction]:
    return [a for a in RESULT_ACTIONS if a.task is None or a.task in TASKS]


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


def readable_copy(services: Services, image: ImageRecord) -> Path:
    """The image's file under its readable name, in a folder of its own (named by its hash) in the
    system's temp folder, from where Gradio serves downloads."""
    folder = Path(tempfile.gettempdir()) / "seedling-downloads" / image.sha256[:32]
    target = folder / file_name(image.prompt, image.seed)
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / (target.name + ".part")
        shutil.copyfile(services.history.path(image), partial)
        partial.replace(target)
    return target


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
            return (None, None) if compare else None
        copy = str(readable_copy(services, image))
        if not compare:
            return copy
        source = source_of(services, image)
        return copy, ((source, str(services.history.path(image))) if source else None)

    shown = [download, slider] if compare else [download]

    def pick(evt: gr.SelectData):
        return evt.index

    gallery.select(pick, None, results.selected, api_visibility="private", queue=False).then(
        show, [gallery, results.selected], shown, api_visibility="private", queue=False
    )
    gallery.change(lambda: 0, None, results.selected, api_visibility="private", queue=False).then(
        show, [gallery, results.selected], shown, api_visibility="private", queue=False
    )
    return results
