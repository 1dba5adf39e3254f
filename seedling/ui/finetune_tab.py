"""Fine-tune tab: upload images with captions (or edit pairs), train an adapter on the job queue
with a live loss curve, sample images and an ETA from the measured step time; Stop keeps the
adapter trained so far, Cancel (after a confirmation) discards it; list and delete adapters."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import pandas as pd
from PIL import Image

from seedling.backend.services import Services
from seedling.model.finetune_config import DEFAULT_LR, FinetuneConfig
from seedling.model.finetune_data import CaptionedImage, Example
from seedling.model.training import format_eta
from seedling.storage.jobs_common import JobRecord, JobStatus
from seedling.ui.common import (
    PRIVATE,
    USER_ERRORS,
    Dataframe,
    Dropdown,
    File,
    Number,
    Radio,
    Slider,
    Textbox,
    adapter_choices,
    model_event,
    user_error,
    whole,
)

POLL_S = 0.5
TEXT_COLUMN = "caption / instruction"
HELP = """**Training set.** Upload pictures (PNG/JPEG/WebP…), optionally with `.txt` captions of the
same name, or a `.zip` of them; type or fix captions in the table. For **edit pairs** name files
`x_before.png` / `x_after.png` (or put them in `before/` and `after/` folders); the text is the
instruction. 12–20 pictures of one style or character work well; each is centre-cropped to 128×128."""

_DEFAULTS = FinetuneConfig()


@dataclass
class FinetuneTab:
    adapter_list: gr.Dropdown
    refresh: gr.Button
    # events after which every adapter dropdown reloads (blocks.py chains the refresh on them)
    trained: object
    deleted: object


def _rows(examples: list[Example], typed: dict[str, str]) -> list[list[str]]:
    out = []
    for ex in examples:
        text = ex.caption if isinstance(ex, CaptionedImage) else ex.instruction
        name = ex.name if isinstance(ex, CaptionedImage) else f"{ex.name} (pair)"
        out.append([name, typed.get(name) or text])
    return out


def _typed(table) -> dict[str, str]:
    """{file name: caption} from the table widget's value (a DataFrame or a list of rows)."""
    if table is None:
        return {}
    rows = table.values.tolist() if isinstance(table, pd.DataFrame) else list(table)
    return {str(r[0]): str(r[1] or "") for r in rows if len(r) >= 2 and r[0]}


def _paths(files) -> list[str]:
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in files]


def loss_frame(job: JobRecord | None = None, curve: list | None = None) -> pd.DataFrame:
    """The loss curve as numbers (an empty frame too: an untyped one makes the plot's axes categorical)."""
    curve = curve if curve is not None else (job.metrics.get("loss", []) if job is not None else [])
    frame = pd.DataFrame(curve or [], columns=["step", "loss"])
    return frame.astype({"step": "int64", "loss": "float64"})


def status_line(job: JobRecord, position: int | None) -> str:
    m = job.metrics
    if job.status == JobStatus.QUEUED:
        where = f" (position {position})" if position else ""
        done = f", {job.progress_step}/{job.progress_total} steps done" if job.progress_step else ""
        return f"Job {job.id}: waiting in the queue{where}{done}"
    if job.status == JobStatus.RUNNING:
        if not job.progress_total:
            return f"Job {job.id}: preparing the training set…"
        loss = m.get("loss") or []
        tail = f" · loss {loss[-1][1]:.4f}" if loss else ""
        pace = f" · {m['step_s']:.2f} s/step · about {format_eta(m.get('eta_s'))} left" if m.get("step_s") else ""
        return f"Job {job.id}: training step {job.progress_step}/{job.progress_total}{tail}{pace}"
    if job.status == JobStatus.SUCCEEDED:
        final = m.get("final_loss")
        ended = (f"stopped at step {m['stopped_at']}/{m.get('planned_steps', job.progress_total)}"
                 if m.get("stopped_at") else "done")
        return (
            f"Job {job.id}: {ended} · adapter **{m.get('adapter_name')}** (#{m.get('adapter_id')})"
            + (f" · final loss {final:.4f}" if final is not None else "")
            + (f" · {m['elapsed']:.0f} s of training" if m.get("elapsed") else "")
            + " · pick it in any generation tab's Adapters list"
        )
    if job.status == JobStatus.CANCELLED:
        return f"Job {job.id}: cancelled · nothing was kept"
    return f"Job {job.id}: {job.status.value}" + (f": {job.error}" if job.error else "")


def watch_training(
    services: Services, job_id: int
) -> Iterator[tuple[str, pd.DataFrame | None, Image.Image | None, str | None]]:
    """(status, loss frame or None if unchanged, samples or None, sample caption or None) until the job ends."""
    last_points, last_sample = -1, None
    while True:
        view = services.jobs.view(job_id)
        job = view.job
        if job.status == JobStatus.FAILED:
            raise gr.Error(f"Job {job.id} failed: {job.error}")
        points = len(job.metrics.get("loss", []))
        frame = loss_frame(job) if points != last_points else None
        last_points = points
        samples = caption = None
        sample_step = job.metrics.get("sample_step")
        if sample_step is not None and sample_step != last_sample:
            data = services.jobs.preview(job_id)
            if data:
                samples = Image.open(io.BytesIO(data))
                prompts = job.metrics.get("sample_prompts", [])
                caption = f"Samples at step {sample_step}: " + " · ".join(f"“{p}”" for p in prompts)
                last_sample = sample_step
        yield status_line(job, view.queue_position), frame, samples, caption
        if job.status.finished:
            if job.status == JobStatus.CANCELLED:
                gr.Warning(f"Job {job.id} was cancelled; nothing was kept")
            return
        time.sleep(POLL_S)


def stop_training(services: Services, job_id: int | None) -> str:
    """Stop: the job ends at its next step and its adapter is kept."""
    if job_id is None:
        return "Nothing to stop"
    try:
        services.finetune.stop(int(job_id))
    except USER_ERRORS as err:
        raise user_error(err) from None
    return f"Job {job_id}: stopping at the next step; the adapter trained so far will be kept…"


def ask_to_cancel(job_id: int | None) -> tuple[gr.Row, str]:
    """Cancel discards the training: ask first (the confirm row), unless there is nothing to cancel."""
    if job_id is None:
        return gr.Row(visible=False), "Nothing to cancel"
    return gr.Row(visible=True), gr.skip()


def cancel_training(services: Services, job_id: int | None) -> str:
    if job_id is None:
        return "Nothing to cancel"
    status = services.jobs.cancel(int(job_id))
    if status == JobStatus.RUNNING:
        return f"Job {job_id}: cancelling at the next step; nothing will be kept…"
    return f"Job {job_id}: cancelled · nothing was kept" if status == JobStatus.CANCELLED else f"Job {job_id}: {status.value}"


def adapter_info(services: Services, adapter_id) -> tuple[str, pd.DataFrame]:
    if not adapter_id:
        return "", loss_frame()
    try:
        a = services.adapters.get(int(adapter_id))
    except (LookupError, TypeError, ValueError, OverflowError) as err:
        return str(err), loss_frame()
    p, m = a.params, a.metrics
    final = m.get("final_loss")
    lines = [
        f"**{a.name}** (#{a.id}) · {a.kind} · base model `{a.base_model}` · job {a.job_id}",
        f"{len(a.data)} training examples · {m.get('steps', '?')} steps · rank {p.get('rank')} · "
        f"lr {p.get('learning_rate') or DEFAULT_LR.get(a.kind, '?')}"
        + (f" · final loss {final:.4f}" if final is not None else "")
        + (f" · {m['train_seconds']:.0f} s" if m.get("train_seconds") else ""),
    ]
    if m.get("stopped_at"):
        lines.append(f"Stopped at step {m['stopped_at']} of {m.get('planned_steps', '?')}: usable as it is.")
    return "\n\n".join(lines), loss_frame(curve=m.get("loss", []))


def build(services: Services) -> FinetuneTab:
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown(HELP)
            with gr.Row():  # above the file list, which grows with every picture
                run = gr.Button("Start training", variant="primary", elem_id="ft-run")
                stop = gr.Button("Stop and keep", elem_id="ft-stop")
                cancel = gr.Button("Cancel", variant="stop", elem_id="ft-cancel")
            with gr.Row(visible=False) as confirm_row:
                gr.Markdown("Discard this training? Everything it learned is lost (Stop keeps it).")
                confirm = gr.Button("Discard training", variant="stop", elem_id="ft-cancel-confirm")
                keep = gr.Button("Keep training", elem_id="ft-cancel-keep")
            files = File(
                label="Training pictures, .txt captions, or a .zip",
                file_count="multiple",
                type="filepath",
                elem_id="ft-files",
            )
            table = Dataframe(
                headers=["file", TEXT_COLUMN],
                datatype=["str", "str"],
                column_count=2,
                static_columns=[0],
                type="array",
                interactive=True,
                label="Captions (edit here)",
                elem_id="ft-table",
            )
            name = Textbox(label="Adapter name", placeholder="my-style", max_lines=1, elem_id="ft-name")
            with gr.Accordion("Training settings", open=False):
                method = Radio(
                    ["lora", "full"],
                    value=_DEFAULTS.method,
                    label="Method",
                    info="LoRA: small adapter on attention + MLP; full: every DiT weight",
                )
                with gr.Row():
                    rank = Slider(1, 64, value=_DEFAULTS.rank, step=1, label="LoRA rank")
                    alpha = Number(value=0, label="LoRA alpha (0 = rank)", minimum=0)
                with gr.Row():
                    steps = Slider(
                        10, 3000, value=_DEFAULTS.steps, step=10, label="Steps", elem_id="ft-steps"
                    )
                    lr = Number(value=0, label="Learning rate (0 = default)", minimum=0)
                with gr.Row():
                    batch = Slider(
                        1, 32, value=_DEFAULTS.batch_size, step=1, label="Batch size", elem_id="ft-batch"
                    )
                    sample_every = Slider(
                        0,
                        500,
                        value=_DEFAULTS.sample_every,
                        step=5,
                        label="Samples every K steps (0 = at the end)",
                        elem_id="ft-sample-every",
                    )
                sample_prompts = Textbox(
                    label="Sample prompts (one per line; empty = the first captions)", lines=2
                )
                seed = Number(value=0, precision=0, label="Seed", minimum=0)
        with gr.Column(scale=1):
            status = gr.Markdown("", elem_id="ft-status")
            plot = gr.LinePlot(
                loss_frame(), x="step", y="loss", title="Training loss", height=220, elem_id="ft-loss"
            )
            samples = gr.Image(
                label="Samples (current weights)", interactive=False, height=260, elem_id="ft-samples"
            )
            sample_caption = gr.Markdown("", elem_id="ft-sample-caption")
            with gr.Group():
                adapter_list = Dropdown(
                    choices=adapter_choices(services), label="Adapters", elem_id="ft-adapter-list"
                )
                info = gr.Markdown("", elem_id="ft-adapter-info")
                with gr.Row():
                    delete = gr.Button("Delete adapter", variant="stop", elem_id="ft-delete")
                    refresh = gr.Button("Refresh", elem_id="ft-refresh")
    job_id = gr.State(None)

    def load_files(paths, table):
        """The upload as table rows (captions from sidecars; ones already typed are kept)."""
        paths = _paths(paths)
        if not paths:
            return []
        try:
            examples = services.finetune.read_upload(paths)
        except USER_ERRORS as err:
            raise user_error(err) from None
        return _rows(examples, _typed(table))

    files.change(load_files, [files, table], table, api_visibility=PRIVATE)

    def finetune(
        files,
        table,
        name,
        method,
        rank,
        alpha,
        steps,
        lr,
        batch,
        sample_every,
        sample_prompts,
        seed,
        progress=gr.Progress(),  # noqa: B008 - the Gradio idiom
    ):
        """Train an adapter on the uploaded pictures (captions from the table or .txt sidecars).
        Streams the status, the loss curve and sample images; the adapter id is in the status."""
        paths = _paths(files)
        if not paths:
            raise gr.Error("Upload training pictures first (or a .zip of them).")
        try:
            examples = services.finetune.read_upload(paths)
            typed = _typed(table)
            texts = [typed.get(r[0], r[1]) for r in _rows(examples, {})]
            examples = services.finetune.with_texts(examples, texts)
            job = services.finetune.submit(
                (name or "").strip(),
                examples,
                method=method,
                rank=whole(rank),
                alpha=alpha if alpha else None,
                steps=whole(steps),
                learning_rate=lr if lr else None,
                batch_size=whole(batch),
                sample_every=whole(sample_every),
                sample_prompts=[p.strip() for p in (sample_prompts or "").splitlines() if p.strip()][:4],
                seed=whole(seed or 0),
            )
        except USER_ERRORS as err:
            raise user_error(err) from None
        yield job.id, f"Job {job.id}: submitted", loss_frame(), None, ""
        for line, frame, image, caption in watch_training(services, job.id):
            view = services.jobs.get(job.id)
            if view.progress_total:
                progress((view.progress_step, view.progress_total), desc=f"job {job.id}", unit="steps")
            yield (
                job.id,
                line,
                frame if frame is not None else gr.skip(),
                image if image is not None else gr.skip(),
                caption if caption is not None else gr.skip(),
            )

    trained = run.click(
        finetune,
        [files, table, name, method, rank, alpha, steps, lr, batch, sample_every, sample_prompts, seed],
        [job_id, status, plot, samples, sample_caption],
        api_name="finetune",
        **model_event(services),
    )
    stop.click(lambda j: stop_training(services, j), job_id, status, api_visibility=PRIVATE, queue=False)
    cancel.click(lambda j: ask_to_cancel(j), job_id, [confirm_row, status], api_visibility=PRIVATE, queue=False)
    keep.click(lambda: gr.Row(visible=False), None, confirm_row, api_visibility=PRIVATE, queue=False)
    confirm.click(lambda j: (gr.Row(visible=False), cancel_training(services, j)), job_id, [confirm_row, status],
                  api_visibility=PRIVATE, queue=False)

    adapter_list.change(
        lambda a: adapter_info(services, a), adapter_list, [info, plot], api_visibility=PRIVATE
    )

    def delete_adapter(adapter_id):
        if not adapter_id:
            raise gr.Error("Pick an adapter to delete.")
        try:
            record = services.adapters.delete(int(adapter_id))
        except (LookupError, TypeError, ValueError, OverflowError) as err:
            raise gr.Error(str(err)) from None
        return f"Deleted adapter **{record.name}** (#{record.id}) and its file."

    deleted = delete.click(delete_adapter, adapter_list, info, api_visibility=PRIVATE)
    return FinetuneTab(adapter_list=adapter_list, refresh=refresh, trained=trained, deleted=deleted)


def adapter_dropdown_update(services: Services, keep: list | str | None = None) -> gr.Dropdown:
    """Fresh choices; selected values that still exist stay selected."""
    choices = adapter_choices(services)
    values = {v for _, v in choices}
    if isinstance(keep, list):
        return gr.Dropdown(choices=choices, value=[k for k in keep if k in values])
    return gr.Dropdown(choices=choices, value=keep if keep in values else None)
