"""Submit -> PNG-on-disk latency through the real path: job row, SqliteHuey queue, the worker
process (warm model), file store. Prints a table and writes JSON.

    python -m seedling.backend.bench_latency --model assets/default --jobs 10 --out runs/latency.json
    python -m seedling.backend.bench_latency --config tiny      # random weights, when no folder exists yet

Jobs are generated at the model's default size (pipeline.json's `default_size`) unless `--size` says.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from seedling.atomic import write_atomic
from seedling.backend.services import build_services
from seedling.backend.settings import Settings
from seedling.backend.specs import make_spec
from seedling.backend.supervisor import WorkerSupervisor
from seedling.model.task_table import native_size_of
from seedling.storage.jobs_common import JobStatus


def _wait_for_png(services, job_id: int, timeout_s: float) -> float:
    """Seconds until the job's PNG exists (polled every 2 ms)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        job = services.jobs.get(job_id)
        if job.status == JobStatus.SUCCEEDED:
            (image,) = services.jobs.view(job_id).images
            if services.history.path(image).is_file():
                return time.perf_counter()
        elif job.status.finished:
            raise RuntimeError(f"job {job_id} {job.status}: {job.error}")
        time.sleep(0.002)
    raise TimeoutError(f"job {job_id} took more than {timeout_s} s")


def _final_timings(services, job_id: int, timeout_s: float = 5.0) -> dict[str, float]:
    """The job's stage timings. The worker commits the outputs (the job reads SUCCEEDED, the PNG
    is there) before it writes the timings, so wait for them a moment."""
    start = time.perf_counter()
    while True:
        timings = services.jobs.get(job_id).timings
        if "submit_to_saved" in timings or time.perf_counter() - start > timeout_s:
            return timings
        time.sleep(0.002)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="model folder")
    p.add_argument(
        "--config", default=None, help="or: save a random-weight config (tiny, default) and use it"
    )
    p.add_argument("--jobs", type=int, default=10)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    p.add_argument("--size", type=int, default=None, help="image side in px (default: the model's default size)")
    p.add_argument("--quantize", default="none")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="seedling-bench-"))
    model = args.model
    if model is None:
        from seedling.model.pipeline import SeedlingPipeline

        model = tmp / f"{args.config or 'tiny'}-random"
        SeedlingPipeline.from_config(args.config or "tiny", seed=0).save_pretrained(model)
    size = args.size or native_size_of(model)
    settings = Settings(data_dir=tmp / "data", model_path=model, quantize=args.quantize)
    services = build_services(settings)
    worker = WorkerSupervisor(settings.worker_args())
    worker.start()
    try:
        warm = services.jobs.submit(make_spec("generate", prompt="warm up", steps=args.steps))
        _wait_for_png(services, warm.id, timeout_s=600)
        rows = []
        for i in range(args.jobs):
            t0 = time.perf_counter()
            job = services.jobs.submit(
                make_spec(
                    "generate",
                    prompt=f"a red fox number {i}",
                    seed=i,
                    steps=args.steps,
                    height=size,
                    width=size,
                )
            )
            t1 = _wait_for_png(services, job.id, timeout_s=120)
            timings = _final_timings(services, job.id)
            rows.append({"submit_to_png": t1 - t0, **timings})
    finally:
        worker.stop()
        services.close()
        shutil.rmtree(tmp, ignore_errors=True)

    keys = ["submit_to_png", "queue_wait", "encode_text", "encode_context", "sample", "decode", "save"]
    print(f"model: {model}  steps: {args.steps or 'model default'}  size: {size}x{size}  jobs: {args.jobs}  quantize: {args.quantize}")
    print(f"{'stage':<16}{'median s':>10}{'min s':>10}{'max s':>10}")
    summary = {}
    for key in keys:
        vals = [r[key] for r in rows if key in r]
        if vals:
            summary[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
            print(
                f"{key:<16}{summary[key]['median']:>10.3f}{summary[key]['min']:>10.3f}{summary[key]['max']:>10.3f}"
            )
    result = {"model": str(model), "steps": args.steps, "size": size, "jobs": rows, "summary": summary}
    if args.out:
        write_atomic(args.out, json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
