"""The fine-tune job: trains an adapter on the worker, on the same queue as generation.

Interleaving. The worker runs one job at a time, so a fine-tune job trains in chunks: after each
step it checks whether a job of another kind is waiting (other fine-tune jobs wait their turn in
FIFO order); once it has trained at least MIN_CHUNK_S seconds
in this turn and someone waits, it checkpoints and raises JobYielded, and the worker runtime puts
it back at the end of the queue (status "queued", a queue position like any job). The waiting
generation jobs run, then the fine-tune job resumes from its checkpoint. A generation submitted
during training therefore waits at most MIN_CHUNK_S plus one step and a checkpoint, and never
fails; with nobody waiting, training runs uninterrupted. A crash or restart resumes from the
last checkpoint (every `checkpoint_every` steps) the same way.

Reports: progress (step/total) every step; the loss curve, sample prompts, measured seconds per
step and ETA as the job's metrics (at most every METRICS_EVERY_S); sample images as the job's
preview (a 2x2 grid).

Stop (`request_stop`: a marker file in the job's work folder, so it reaches a job that is running
or waiting between chunks alike) ends training at the next step and keeps what it has: the
checkpoint becomes an adapter like a finished one, with "stopped_at" in its metrics. Cancel
discards the work folder. LoRA adapters are saved as peft folders, full fine-tunes as
.safetensors files.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from PIL import Image

from seedling.atomic import write_atomic
from seedling.backend.context import JobContext
from seedling.backend.errors import JobCancelled, JobYielded
from seedling.backend.model_host import ModelHost
from seedling.backend.specs import FinetuneSpec
from seedling.storage.adapters_common import NewAdapter

log = logging.getLogger(__name__)

MIN_CHUNK_S = 5.0  # training time per turn before yielding to waiting jobs (progress is guaranteed)
METRICS_EVERY_S = 1.0
MAX_CURVE_POINTS = 1000  # the stored loss curve is averaged down to this many points
STOP_MARKER = "stop-requested"


def request_stop(work_dir: Path) -> None:
    """Ask the fine-tune job owning `work_dir` to stop at its next step and keep its adapter."""
    write_atomic(work_dir / STOP_MARKER, "stop\n")


def loss_curve(losses: list[float], max_points: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """[[step, loss], ...] (steps from 1), averaged over windows when there are more than max_points."""
    if len(losses) <= max_points:
        return [[i + 1, round(v, 6)] for i, v in enumerate(losses)]
    window = -(-len(losses) // max_points)
    out = []
    for start in range(0, len(losses), window):
        chunk = losses[start : start + window]
        out.append([start + len(chunk), round(sum(chunk) / len(chunk), 6)])
    return out


def sample_grid(images: list[Image.Image]) -> Image.Image:
    """Up to four samples as a 2x2 grid (a row for one or two)."""
    images = images[:4]
    w, h = images[0].size
    cols = min(2, len(images))
    rows = -(-len(images) // 2)
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im.convert("RGB"), ((i % 2) * w, (i // 2) * h))
    return grid


def _examples(ctx: JobContext, spec: FinetuneSpec) -> list[Any]:
    from seedling.model.finetune import CaptionedImage, EditPair

    if spec.images:
        return [
            CaptionedImage(f"image #{t.image_id}", ctx.load_image(t.image_id), t.caption) for t in spec.images
        ]
    return [
        EditPair(
            f"pair #{i + 1}",
            ctx.load_image(p.before_image_id),
            ctx.load_image(p.after_image_id),
            p.instruction,
        )
        for i, p in enumerate(spec.pairs)
    ]


def _base_dit(pipe: Any, model: ModelHost) -> Any:
    """Full-precision DiT weights to train from: the warm model's own (never modified: training
    works on a copy), or a fresh load from the model folder when the worker runs quantized."""
    if getattr(pipe, "quantization", "none") == "none":
        return pipe.dit
    from seedling.model.dit import UnifiedDiT

    return UnifiedDiT.from_pretrained(model.model_path / "dit", device=str(pipe.device))


def run_finetune_job(ctx: JobContext, spec: FinetuneSpec, model: ModelHost) -> dict[str, float]:
    from seedling.model.adapters import save_adapter
    from seedling.model.finetune import CANCEL, PAUSE, STOP, TrainProgress, finetune, validate_examples
    from seedling.model.training import checkpoint_step

    ctx.sweep_work_dirs()
    pipe = model.get()
    config = spec.finetune_config()
    examples = _examples(ctx, spec)
    validate_examples(examples, config.size)
    work = ctx.work_dir()
    if (work / STOP_MARKER).exists() and checkpoint_step(work) == 0:
        shutil.rmtree(work, ignore_errors=True)
        raise JobCancelled("stopped before the first step: nothing to keep")
    turn_start = time.monotonic()
    metrics: dict[str, Any] = {"total": config.steps, "sample_prompts": [], "sample_step": None}
    last_write = 0.0

    def write_metrics(progress: TrainProgress) -> None:
        nonlocal last_write
        metrics.update(
            step=progress.step,
            lr=progress.lr,
            elapsed=round(progress.elapsed, 2),
            loss=loss_curve(progress.losses),
            step_s=None if progress.seconds_per_step is None else round(progress.seconds_per_step, 3),
            eta_s=None if progress.eta is None else round(progress.eta, 1),
        )
        ctx.report_metrics(dict(metrics))
        last_write = time.monotonic()

    def on_progress(progress: TrainProgress) -> str | None:
        preview = None
        if progress.samples:
            preview = sample_grid(progress.samples)
            metrics.update(sample_prompts=progress.sample_prompts[:4], sample_step=progress.step)
        ctx.progress(progress.step, progress.total, preview)
        if preview is not None or time.monotonic() - last_write >= METRICS_EVERY_S:
            write_metrics(progress)
        if ctx.cancel_requested():
            return CANCEL
        if (work / STOP_MARKER).exists():
            write_metrics(progress)
            return STOP
        # Yield to waiting generations; another fine-tune job waits its turn in FIFO order (two
        # trainings taking turns would only add the resume overhead to both).
        if ctx.can_yield and time.monotonic() - turn_start >= MIN_CHUNK_S and ctx.others_waiting("finetune"):
            write_metrics(progress)
            return PAUSE
        return None

    result = finetune(
        pipe,
        examples,
        config,
        work,
        callback=on_progress,
        base_dit=_base_dit(pipe, model),
        metadata={"name": spec.name, "base_model": model.name},
    )
    if result.status == "cancelled":
        shutil.rmtree(work, ignore_errors=True)
        raise JobCancelled()
    if result.status == "paused":
        log.info("fine-tune job %d yields at step %d/%d", ctx.job_id, result.step, config.steps)
        raise JobYielded()

    curve = loss_curve(result.losses)
    adapter_metrics = {
        "final_loss": result.final_loss,
        "steps": result.step,
        "train_seconds": round(result.seconds, 2),
        "loss": curve,
    }
    stopped = {"stopped_at": result.step, "planned_steps": config.steps} if result.status == "stopped" else {}
    adapter_metrics |= stopped
    data = [t.model_dump() for t in spec.images] or [p.model_dump() for p in spec.pairs]
    record = ctx.save_adapter(
        lambda path: save_adapter(result.adapter, path),
        NewAdapter(
            name=spec.name,
            kind=config.method,
            file_path="",
            sha256="",
            base_model=model.name,
            params=config.to_dict(),
            data=data,
            metrics=adapter_metrics,
        ),
        folder=result.adapter.kind == "lora",  # peft's format; a full fine-tune has no peft form
    )
    ctx.report_metrics(
        metrics
        | {"step": result.step, "loss": curve, "elapsed": round(result.seconds, 2)}
        | {"adapter_id": record.id, "adapter_name": record.name, "final_loss": result.final_loss}
        | stopped
        | {"eta_s": None}
    )
    ctx.progress(result.step, config.steps)
    shutil.rmtree(work, ignore_errors=True)
    return {"train": float(result.seconds)}
