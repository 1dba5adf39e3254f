"""Helpers shared by the tabs: submitting a job, watching it (DB polling), user-facing errors."""

from __future__ import annotations

import io
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gradio as gr
from PIL import Image

from backend.errors import JobError
from backend.services import Services
from backend.specs import MAX_SEED, JobSpec, make_spec
from storage.images_common import ImageRecord, Relative
from storage.jobs_common import JobRecord, JobStatus

# Every event that waits on model work shares this id, so Gradio schedules them as one group.
MODEL_CONCURRENCY_ID = "model"
POLL_S = 0.1
PRIVATE = "private"  # api_visibility of UI glue events


def model_event(services: Services) -> dict:
    """Keyword arguments for every event that waits on model work: one shared concurrency group,
    as wide as the job queue, so jobs wait (with positions) in the Huey queue, not in Gradio's."""
    return {"concurrency_id": MODEL_CONCURRENCY_ID, "concurrency_limit": services.settings.max_queue}


def resolve_seed(seed: float | None) -> int:
    """-1 (or empty) picks a random seed; the job records the one used."""
    if seed is None or int(seed) < 0:
        return random.randint(0, MAX_SEED)
    return int(seed)


def build_spec(kind: str, **fields) -> JobSpec:
    """A validated spec, or a gr.Error a person can read."""
    try:
        return make_spec(kind, **fields)
    except JobError as err:
        raise gr.Error(str(err)) from None


def submit(services: Services, spec: JobSpec, rerun_of: int | None = None) -> JobRecord:
    try:
        if rerun_of is not None:
            return services.jobs.rerun(rerun_of)
        return services.jobs.submit(spec)
    except JobError as err:
        raise gr.Error(str(err)) from None


def gallery_items(services: Services, images: list[ImageRecord]) -> list[tuple[str, str]]:
    return [(str(services.history.path(im)), f"#{im.id} · {im.task or im.origin}") for im in images]


def relative_items(services: Services, relatives: list[Relative]) -> list[tuple[str, str]]:
    return [(str(services.history.path(r.image)), f"#{r.image.id} · {r.role}") for r in relatives]


@dataclass(frozen=True)
class JobUpdate:
    status: str  # markdown for a person
    preview: Image.Image | None
    images: list[ImageRecord] | None  # set once, when the job succeeded
    done: bool


def _status_line(job: JobRecord, position: int | None) -> str:
    if job.status == JobStatus.QUEUED:
        where = f" (position {position})" if position else ""
        return f"Job {job.id}: waiting in the queue{where}"
    if job.status == JobStatus.RUNNING:
        steps = f" step {job.progress_step}/{job.progress_total}" if job.progress_total else ""
        return f"Job {job.id}: running{steps}"
    if job.status == JobStatus.SUCCEEDED:
        total = job.timings.get("submit_to_saved")
        return f"Job {job.id}: done" + (f" in {total:.2f} s" if total is not None else "")
    return f"Job {job.id}: {job.status.value}" + (f": {job.error}" if job.error else "")


def watch(services: Services, job_id: int, progress: gr.Progress | None = None) -> Iterator[JobUpdate]:
    """Poll the job row until it finishes, yielding status and new previews. A failed job ends
    with gr.Error (its message, not a traceback); a cancelled one with a gr.Warning."""
    last_step = -1
    while True:
        view = services.jobs.view(job_id)
        job = view.job
        if progress is not None and job.progress_total:
            progress((job.progress_step, job.progress_total), desc=f"job {job.id}", unit="steps")
        if job.status == JobStatus.FAILED:
            raise gr.Error(f"Job {job.id} failed: {job.error}")
        if job.status == JobStatus.CANCELLED:
            gr.Warning(f"Job {job.id} was cancelled")
            yield JobUpdate(_status_line(job, None), None, None, done=True)
            return
        if job.status == JobStatus.SUCCEEDED:
            yield JobUpdate(_status_line(job, None), None, view.images, done=True)
            return
        preview = None
        if job.progress_step != last_step and job.progress_step > 0:
            data = services.jobs.preview(job_id)
            preview = Image.open(io.BytesIO(data)) if data else None
            last_step = job.progress_step
        yield JobUpdate(_status_line(job, view.queue_position), preview, None, done=False)
        time.sleep(POLL_S)


def cancel_handler(services: Services) -> Callable[[int | None], str]:
    def cancel(job_id: int | None) -> str:
        if job_id is None:
            return "Nothing to cancel"
        status = services.jobs.cancel(int(job_id))
        if status == JobStatus.RUNNING:
            return f"Job {job_id}: cancelling at the next step…"
        return f"Job {job_id}: {status.value}"

    return cancel


def run_and_watch(
    services: Services, spec: JobSpec | None, progress: gr.Progress, rerun_of: int | None = None
):
    """Submit, then stream (job_id, status, preview, gallery) tuples for a tab's outputs."""
    job = submit(services, spec, rerun_of=rerun_of)  # type: ignore[arg-type]
    yield job.id, f"Job {job.id}: submitted", None, gr.skip()
    for update in watch(services, job.id, progress):
        if update.images:  # done: the preview shows the first result
            items = gallery_items(services, update.images)
            yield job.id, update.status, items[0][0], items
        else:
            yield (
                job.id,
                update.status,
                update.preview if update.preview is not None else gr.skip(),
                gr.skip(),
            )


def seed_input(label: str = "Seed (-1 = random)") -> gr.Number:
    return gr.Number(value=-1, precision=0, label=label, minimum=-1, maximum=MAX_SEED)


def steps_input() -> gr.Slider:
    return gr.Slider(0, 50, value=0, step=1, label="Steps (0 = model default)")


def guidance_input(label: str = "Guidance (0 = model default)") -> gr.Slider:
    return gr.Slider(0.0, 15.0, value=0.0, step=0.5, label=label)


def run_buttons(label: str, elem_prefix: str) -> tuple[gr.Button, gr.Button]:
    """The primary action and its Cancel button, side by side."""
    with gr.Row():
        run = gr.Button(label, variant="primary", elem_id=f"{elem_prefix}-run")
        cancel = gr.Button("Cancel", elem_id=f"{elem_prefix}-cancel")
    return run, cancel


def results_column(elem_prefix: str) -> tuple[gr.Markdown, gr.Image, gr.Gallery]:
    """The right-hand column every model tab shows: job status, live preview, results."""
    with gr.Column(scale=1):
        status = gr.Markdown("", elem_id=f"{elem_prefix}-status")
        preview = gr.Image(label="Preview", interactive=False, height=160)
        gallery = gr.Gallery(label="Results", columns=4, height=320, elem_id=f"{elem_prefix}-gallery")
    return status, preview, gallery


def optional(value: float | None) -> float | None:
    """Sliders have no "unset": 0 means "let the model choose"."""
    return None if value is None or value == 0 else value


@dataclass
class AdapterPicker:
    """Fine-tuned adapters for a generation tab: any number of them, one strength for all."""

    adapters: gr.Dropdown
    strength: gr.Slider

    @property
    def inputs(self) -> list:
        return [self.adapters, self.strength]


def adapter_choices(services: Services) -> list[tuple[str, str]]:
    """(label, value) pairs; the value is the adapter id as text (Dropdown values are strings)."""
    return [(f"{a.name} ({a.kind}, #{a.id})", str(a.id)) for a in services.adapters.list()]


def adapter_picker(services: Services, elem_prefix: str) -> AdapterPicker:
    with gr.Row():
        adapters = gr.Dropdown(
            choices=adapter_choices(services),
            value=[],
            multiselect=True,
            label="Adapters (from the Fine-tune tab)",
            scale=3,
            allow_custom_value=True,  # API callers may pass ids; unknown ones get the backend's message
            elem_id=f"{elem_prefix}-adapters",
        )
        strength = gr.Slider(
            -1.0,
            2.0,
            value=1.0,
            step=0.05,
            label="Adapter strength",
            scale=2,
            elem_id=f"{elem_prefix}-strength",
        )
    return AdapterPicker(adapters, strength)


def adapter_uses(selected: list | str | None, strength: float | None) -> list[tuple[int, float]]:
    """Dropdown values (adapter ids as text) and the strength slider -> spec `adapters`."""
    if selected is None or selected == "":
        return []
    if isinstance(selected, (str, int)):
        selected = [selected]
    s = 1.0 if strength is None else float(strength)
    uses = []
    for value in selected:
        try:
            uses.append((int(value), s))
        except (TypeError, ValueError):
            raise gr.Error(f"Unknown adapter {value!r}: pick one from the list.") from None
    return uses
