"""Helpers shared by the tabs: submitting a job, watching it (woken by the job reader), user-facing errors."""

from __future__ import annotations

import functools
import io
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import gradio as gr
from PIL import Image

from seedling.backend import worker_status
from seedling.backend.errors import JobError
from seedling.backend.history import decode_image
from seedling.backend.job_events import JobState
from seedling.backend.jobs import JobView
from seedling.backend.services import Services
from seedling.backend.specs import MAX_SEED, JobSpec, make_spec
from seedling.storage.files import StorageError
from seedling.storage.images_common import ImageRecord, Relative
from seedling.storage.jobs_common import JobRecord, JobStatus
from seedling.ui.gallery import WholeGallery

# Every event that waits on model work shares this id, so Gradio schedules them as one group.
MODEL_CONCURRENCY_ID = "model"
POLL_S = 0.1  # the old per-request polling (Settings.watch == "poll")
WAIT_S = 1.0  # the longest a waiting request sleeps without a change to its job
# The most often a waiting request tells its person something new (its end: at once): a running
# job's steps and previews, and a queued job's place in line, which moves for every waiting
# request each time a job ends (each update costs Gradio a component rebuild per skipped output).
SAY_EVERY_S = 0.25
SAY_QUEUED_EVERY_S = 1.0
# A tab's job list is read at most this often per browser session, however many of its jobs are
# streaming: reading it on every update of every job was the app's main cost under load.
LIST_EVERY_S = 1.0
PRIVATE = "private"  # api_visibility of UI glue events


def model_event(services: Services) -> dict:
    """Keyword arguments for every event that waits on model work: one shared concurrency group,
    one wider than the job queue, so jobs wait (with positions) in the Huey queue, not in Gradio's,
    and a submit beyond --max-queue reaches JobService and answers "queue full" at once (as wide
    as the queue, it would wait unseen in Gradio's queue instead)."""
    return {"concurrency_id": MODEL_CONCURRENCY_ID, "concurrency_limit": services.settings.max_queue + 1}


# What a handler turns into a message for the person: the backend's refusals and storage trouble
# (disk full, read-only data folder) - both are sentences already.
USER_ERRORS = (JobError, StorageError)


def user_error(err: Exception) -> gr.Error:
    """A backend message (a sentence in lower case) as the error a person sees."""
    text = str(err).strip() or "Something went wrong."
    return gr.Error(text[0].upper() + text[1:])


def _check_upload(path: str | None, mode: str | None = None, what: str = "the uploaded picture"):
    """Decode an uploaded file with the app's limits (bombs, damaged files), or raise gr.Error."""
    if not path:
        raise gr.Error("The picture did not arrive; upload it again.")
    try:
        return decode_image(path, mode, what)
    except USER_ERRORS as err:
        raise user_error(err) from None


def readable(component, check: Callable | None = None):
    """`component` (an input) whose refusal of a value it cannot read (text in a slider, a damaged
    picture, ...) is a sentence for the caller, not an exception Gradio hides ("set show_error").
    `check(payload)` may return the value itself (or raise gr.Error) before Gradio's own reading.
    The instance's preprocess is wrapped: a subclass would make Gradio write a .pyi into ui/."""
    original = component.preprocess

    def preprocess(payload):
        if check is not None and payload is not None:
            value = check(payload)
            if value is not None:
                return value
        name = component.label or "a field"
        try:
            return original(payload)
        except gr.Error as err:
            if "<class " not in str(err):  # Gradio's own sentence ("Value 0 is less than minimum value 1.")
                raise
            choices = getattr(component, "choices", None)
            listed = f" choose one of: {', '.join(str(c[1]) for c in choices)}" if choices else ""
            raise gr.Error(
                f"{str(payload)[:40]!r} is not a valid value for {name};{listed}".rstrip(";")
            ) from None
        except Exception:  # noqa: BLE001 - whatever the component raised, the value is unusable
            raise gr.Error(f"{str(payload)[:40]!r} is not a valid value for {name}.") from None

    component.preprocess = preprocess
    return component


def SafeImage(**kwargs) -> gr.Image:
    """gr.Image whose uploads are decoded with the app's limits: a damaged file, a file that is no
    picture or a decompression bomb ends in a sentence."""
    image = gr.Image(**kwargs)

    def check(payload):
        decoded = _check_upload(payload.path, image.image_mode)
        return decoded if image.type == "pil" else None

    return readable(image, check)


def SafeImageEditor(**kwargs) -> gr.ImageEditor:
    """gr.ImageEditor with the same upload checks (background, layers, composite)."""
    editor = gr.ImageEditor(**kwargs)

    def check(payload):
        if payload.id is None:
            for part in (payload.background, payload.composite, *(payload.layers or [])):
                if part is not None:
                    _check_upload(getattr(part, "path", None), None, "the picture in the editor")

    return readable(editor, check)


def Gallery(**kwargs) -> gr.Gallery:
    """gr.Gallery that shows each picture whole: letterboxed in its cell, never cropped to fill it,
    and a cell stays one column wide when there are fewer pictures than columns (Gradio's
    fit_columns would grow a single result's square cell to the full width, taller than the box,
    which then cuts it off)."""
    return WholeGallery(object_fit="contain", fit_columns=False, **kwargs)


def _readable_factory(cls):
    def make(*args, **kwargs):
        return readable(cls(*args, **kwargs))

    make.__name__ = cls.__name__
    make.__doc__ = f"gr.{cls.__name__} whose unreadable values are refused with a sentence."
    return make


Slider = _readable_factory(gr.Slider)
Number = _readable_factory(gr.Number)
Dropdown = _readable_factory(gr.Dropdown)
Radio = _readable_factory(gr.Radio)
Checkbox = _readable_factory(gr.Checkbox)
Textbox = _readable_factory(gr.Textbox)
Dataframe = _readable_factory(gr.Dataframe)
File = _readable_factory(gr.File)


def api_call(fn: Callable) -> Callable:
    """An API endpoint whose backend errors (bad id, unknown job, ...) reach the caller as gr.Error."""

    @functools.wraps(fn)  # gr.api reads the parameters and the docstring
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            raise user_error(err) from None

    return wrapper


def resolve_seed(seed: float | None) -> int:
    """-1 (or empty) picks a random seed; the job records the one used."""
    try:
        value = float(seed) if seed is not None else -1.0
    except (TypeError, ValueError):
        raise gr.Error(f"The seed must be a whole number (-1 = random), not {str(seed)[:40]!r}.") from None
    if not math.isfinite(value) or value != int(value) or value > MAX_SEED:
        raise gr.Error(f"The seed must be a whole number from -1 to {MAX_SEED}, not {seed!r}.")
    return random.randint(0, MAX_SEED) if value < 0 else int(value)


def build_spec(kind: str, **fields) -> JobSpec:
    """A validated spec, or a gr.Error a person can read."""
    try:
        return make_spec(kind, **fields)
    except USER_ERRORS as err:
        raise user_error(err) from None


def submit(services: Services, spec: JobSpec, rerun_of: int | None = None) -> JobRecord:
    try:
        if rerun_of is not None:
            return services.jobs.rerun(rerun_of)
        return services.jobs.submit(spec)
    except USER_ERRORS as err:
        raise user_error(err) from None


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


def _status_line(job: JobRecord, position: int | None, starting: str | None = None) -> str:
    if job.status == JobStatus.QUEUED:
        where = f" (position {position})" if position else ""
        why = f"; the worker is {starting}" if starting else ""
        return f"Job {job.id}: waiting in the queue{where}{why}"
    if job.status == JobStatus.RUNNING:
        steps = f" step {job.progress_step}/{job.progress_total}" if job.progress_total else ""
        return f"Job {job.id}: running{steps}"
    if job.status == JobStatus.SUCCEEDED:
        total = job.timings.get("submit_to_saved")
        seed = job.spec.get("seed")  # the one used, also when the person asked for a random one
        return (
            f"Job {job.id}: done"
            + (f" in {total:.2f} s" if total is not None else "")
            + (f" · seed {seed}" if seed is not None else "")
        )
    return f"Job {job.id}: {job.status.value}" + (f": {job.error}" if job.error else "")


def _job_update(services: Services, view, last_step: int, with_preview: bool = True) -> tuple[JobUpdate, int]:
    """The update a person sees for a job's current row, and the step whose preview it carries
    (`with_preview`: read a new preview if there is one). A failed job raises gr.Error (its
    message, not a traceback); a cancelled one warns."""
    job = view.job
    if job.status == JobStatus.FAILED:
        raise gr.Error(f"Job {job.id} failed: {job.error}")
    if job.status == JobStatus.CANCELLED:
        gr.Warning(f"Job {job.id} was cancelled")
        return JobUpdate(_status_line(job, None), None, None, done=True), last_step
    if job.status == JobStatus.SUCCEEDED:
        return JobUpdate(_status_line(job, None), None, view.images, done=True), last_step
    preview = None
    if with_preview and job.progress_step != last_step and job.progress_step > 0:
        data = services.jobs.preview(job.id)
        preview = Image.open(io.BytesIO(data)) if data else None
        last_step = job.progress_step
    starting = worker_status.waiting_because(services.settings.data_dir) if job.status == JobStatus.QUEUED else None
    return JobUpdate(_status_line(job, view.queue_position, starting), preview, None, done=False), last_step


def _report(progress: gr.Progress | None, job: JobRecord) -> None:
    if progress is not None and job.progress_total:
        progress((job.progress_step, job.progress_total), desc=f"job {job.id}", unit="steps")


def watch(services: Services, job_id: int, progress: gr.Progress | None = None) -> Iterator[JobUpdate]:
    """Updates of a job until it finishes: status lines, new previews, then its images. Waits on
    the process's one job reader (services.events) and says something only when it changed, at
    most every SAY_EVERY_S while it runs and SAY_QUEUED_EVERY_S while it waits, its end at once."""
    if services.settings.watch == "poll" or services.events is None:
        yield from _watch_polling(services, job_id, progress)
        return
    events = services.events
    with events.watching(job_id):
        state, view, last_step, said, said_at = None, None, -1, None, -SAY_QUEUED_EVERY_S
        while True:
            view = _current_view(services, job_id, view, state)
            pause = SAY_EVERY_S if view.job.status == JobStatus.RUNNING else SAY_QUEUED_EVERY_S
            quiet_for = pause - (time.monotonic() - said_at)  # > 0: spoke too recently
            update, last_step = _job_update(services, view, last_step, with_preview=quiet_for <= 0)
            step = view.job.progress_step
            changed = update.preview is not None or update.status != said or 0 < step != last_step
            if update.done or (changed and quiet_for <= 0):
                _report(progress, view.job)
                said, said_at = update.status, time.monotonic()
                yield update
                if update.done:
                    return
                # a queued job's line is re-made at least every WAIT_S: the worker's start-up phase
                state = events.wait(job_id, state, WAIT_S)
            elif changed:  # to say once the pause is over, or at once if the job ends meanwhile
                state = events.wait(job_id, events.state(job_id), quiet_for)
            else:
                state = events.wait(job_id, state, WAIT_S)


def _current_view(services: Services, job_id: int, last: JobView | None, state: JobState | None) -> JobView:
    """The job as the next update shows it. While it waits or runs, everything its status line
    needs (status, step, place in line) is in the job reader's state, so no database read: each
    job that ends moves every waiting request's place, and a read per request per move was most of
    the app's database time under load. The row is read the first time and once the job ended."""
    if last is None or state is None or state.finished:
        return services.jobs.view(job_id)
    job = replace(last.job, status=JobStatus(state.status), progress_step=state.step, progress_total=state.total)
    return JobView(job=job, queue_position=state.position, images=[])


def _watch_polling(services: Services, job_id: int, progress: gr.Progress | None) -> Iterator[JobUpdate]:
    """The path before issue 20 (Settings.watch == "poll"): every waiting request re-reads its
    job every POLL_S and yields each time. Kept as the baseline of bench/bench_ui_latency.py."""
    last_step = -1
    while True:
        view = services.jobs.view(job_id)
        _report(progress, view.job)
        update, last_step = _job_update(services, view, last_step)
        yield update
        if update.done:
            return
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


class TabJobs:
    """The jobs one tab has queued or running for each browser session, listed under its results
    with their places in line and a Cancel per job. Every click on the tab's Run button is a job
    (the event runs with trigger_mode="multiple"); each of its requests refreshes the list."""

    def __init__(self, services: Services, elem_prefix: str):
        self._services = services
        self.elem_prefix = elem_prefix
        self._lock = threading.Lock()
        self._active: dict[str, list[int]] = {}  # session -> job ids, oldest first
        self._read: dict[str, tuple[float, list[tuple[int, str]]]] = {}  # session -> (when, lines)
        self.state = gr.State([])  # [(job id, line)] for the render below

        @gr.render(inputs=self.state)
        def show(jobs):
            if not jobs:
                return
            gr.Markdown(f"**{len(jobs)} job(s) of this tab waiting or running**", elem_id=f"{elem_prefix}-jobs")
            for job_id, line in jobs:
                with gr.Row(equal_height=True):
                    gr.Markdown(line, elem_id=f"{elem_prefix}-job-{job_id}")
                    button = gr.Button(
                        f"Cancel job {job_id}", size="sm", scale=0, elem_id=f"{elem_prefix}-cancel-{job_id}"
                    )
                    button.click(
                        lambda j=job_id: cancel_handler(services)(j),
                        None,
                        self.status_output,
                        api_visibility=PRIVATE,
                        queue=False,
                    )

        self.status_output = None  # set by results_column: where a per-job Cancel answers

    def add(self, session: str, job_id: int) -> None:
        with self._lock:
            self._active.setdefault(session, []).append(job_id)
            self._read.pop(session, None)  # a new job is listed at once

    def remove(self, session: str, job_id: int) -> None:
        with self._lock:
            ids = self._active.get(session, [])
            if job_id in ids:
                ids.remove(job_id)
                self._read.pop(session, None)  # an ended job leaves the list at once
            if not ids:
                self._active.pop(session, None)

    def lines(self, session: str) -> list[tuple[int, str]]:
        """(job id, status line) of the session's jobs of this tab that still wait or run: read
        from the database at most every LIST_EVERY_S per session (and at once after a job was added
        or removed); the requests of one session share the reading."""
        now = time.monotonic()
        with self._lock:
            ids = list(self._active.get(session, []))
            read = self._read.get(session)
            if read is not None and now - read[0] < LIST_EVERY_S:
                return read[1]
        lines = [
            (view.job.id, _status_line(view.job, view.queue_position))
            for view in self._services.jobs.views_of(ids)
            if not view.job.status.finished
        ]
        with self._lock:
            if self._active.get(session, []) == ids:  # nothing was added or removed meanwhile
                self._read[session] = (now, lines)
        return lines


def run_and_watch(
    services: Services,
    spec: JobSpec | None,
    progress: gr.Progress,
    rerun_of: int | None = None,
    tab_jobs: TabJobs | None = None,
    request: gr.Request | None = None,
):
    """Submit, then stream (job_id, status, preview, gallery) tuples for a tab's outputs, and with
    `tab_jobs` a fifth value: the list of the session's jobs of that tab."""
    job = submit(services, spec, rerun_of=rerun_of)  # type: ignore[arg-type]
    session = getattr(request, "session_hash", None) or "-"
    if tab_jobs is None:
        listed = ()
    else:
        tab_jobs.add(session, job.id)
        shown_list = None

        def listed():
            """The session's job list when it changed since this request last sent it, else a skip."""
            nonlocal shown_list
            lines = tab_jobs.lines(session)
            if lines == shown_list:
                return (gr.skip(),)
            shown_list = lines
            return (lines,)

    try:
        yield job.id, f"Job {job.id}: submitted", None, gr.skip(), *(listed() if listed else ())
        shown = False  # a preview of this job is on screen; until then the (cleared) preview stays None
        for update in watch(services, job.id, progress):
            if update.done and tab_jobs is not None:
                tab_jobs.remove(session, job.id)
            extra = listed() if listed else ()
            if update.images:  # done: the preview shows the first result
                items = gallery_items(services, update.images)
                yield job.id, update.status, items[0][0], items, *extra
            else:
                # None rather than gr.skip() while no preview is shown: a skip costs Gradio a rebuild
                # of the component's config, for every update of every waiting request
                preview = update.preview if update.preview is not None else (gr.skip() if shown else None)
                shown = shown or update.preview is not None
                yield job.id, update.status, preview, gr.skip(), *extra
    finally:
        if tab_jobs is not None:
            tab_jobs.remove(session, job.id)


def whole(value):
    """A widget number as an int when it is one (128.0 -> 128); anything else unchanged, for the
    spec's validation to name (NaN, 3.5, "abc" each get a sentence there, not a ValueError here)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def optional(value: float | None) -> float | None:
    """Sliders have no "unset": 0 means "let the model choose"."""
    return None if value is None or value == 0 else value


def adapter_choices(services: Services) -> list[tuple[str, str]]:
    """(label, value) pairs; the value is the adapter id as text (Dropdown values are strings)."""
    def label(a) -> str:
        stopped = f", stopped at step {a.metrics['stopped_at']}" if a.metrics.get("stopped_at") else ""
        return f"{a.name} ({a.kind}{stopped}, #{a.id})"

    return [(label(a), str(a.id)) for a in services.adapters.list()]


def adapter_uses(selected: list | str | None, strength: float | None) -> list[tuple[int, float]]:
    """Dropdown values (adapter ids as text) and the strength slider -> spec `adapters`."""
    if selected is None or selected == "":
        return []
    if isinstance(selected, (str, int)):
        selected = [selected]
    try:
        s = 1.0 if strength is None else float(strength)
    except (TypeError, ValueError):
        raise gr.Error(f"Adapter strength must be a number, not {str(strength)[:40]!r}.") from None
    uses = []
    for value in selected:
        try:
            uses.append((int(value), s))
        except (TypeError, ValueError):
            raise gr.Error(f"Unknown adapter {value!r}: pick one from the list.") from None
    return uses
