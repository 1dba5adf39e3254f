"""Process-level reliability checks (issue #7): crashes, restarts, load, disk and memory.

Every check runs real processes (`python app.py` and its worker) on 127.0.0.1 with a tiny
random-weight model (or --model PATH), prints a markdown table and writes JSON:

    python scripts/reliability.py all --out runs/reliability.json
    python scripts/reliability.py worker-kill --kills 20
    python scripts/reliability.py app-kill --kills 5
    python scripts/reliability.py load --clients 10 --jobs 5
    python scripts/reliability.py queue-full --max-queue 2
    python scripts/reliability.py rss --jobs 200
    python scripts/reliability.py storage         # read-only folder (real) + disk full (injected)
    python scripts/reliability.py half-written    # kill -9 inside a file write

Every loop is bounded in count and time. tests/test_reliability_process.py runs the same
functions with small counts (fast) and with these counts (marker `slow`).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.conftest import AppProcess
from tests.helpers import (
    Stores,
    file_report,
    job_with_prompt,
    open_stores,
    read_only,
    running_mid_job,
    vm_rss_kib,
    wait_for,
)

# The tiny model runs 50 steps in ~0.1-0.3 s with the packed kernels, too fast to kill a job in its
# middle; every app these checks start makes its worker wait this long after each step
# (backend/context.STEP_DELAY_ENV), so a 50-step job lasts at least 1.5 s on any CPU.
STEP_DELAY_S = 0.03
# A job slow enough to be killed in its middle: 256x256, 50 steps on the tiny model (about 2 s).
SLOW = {"width": 128, "height": 128, "steps": 100}  # sizes stay on the model's offered grid; steps make it slow
MEDIUM = {"width": 128, "height": 128, "steps": 60}
QUICK = {"width": 128, "height": 128, "steps": 4}
FINISHED = ("succeeded", "failed", "cancelled")
JOB_TIMEOUT_S = 300.0


def make_tiny_model(folder: Path) -> Path:
    from seedling.model.pipeline import SeedlingPipeline

    SeedlingPipeline.from_config("tiny", seed=0).save_pretrained(str(folder))
    return folder


def machine() -> str:
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{os.cpu_count()} CPU cores, {mem_kib / 2**20:.0f} GiB, {gpu}, {platform.machine()}"


def client_for(app: AppProcess):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def submit_generate(client, prompt: str, seed: int, size: dict, num_outputs: int = 1):
    return client.submit(
        prompt=prompt,
        guidance=0,
        seed=seed,
        num_outputs=num_outputs,
        api_name="/generate",
        **size,
    )


def result_or_error(pending, timeout_s: float) -> tuple[str, str | None]:
    """(final status line, None) or ("", the error text) of a gradio_client job."""
    try:
        status, _preview, _gallery = pending.result(timeout=timeout_s)
        return str(status), None
    except Exception as err:  # noqa: BLE001 - the error text is the measurement
        return "", f"{type(err).__name__}: {err}"


@contextmanager
def running_app(data_dir: Path, model: Path, *extra: str) -> Iterator[AppProcess]:
    app = AppProcess(data_dir, model, *extra, step_delay_s=STEP_DELAY_S).start()
    try:
        yield app
    finally:
        app.stop()


def wait_finished(stores: Stores, job_ids: list[int], timeout_s: float) -> None:
    """Wait (bounded) until every job has a finished status; returns either way."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(stores.jobs.get(j).status.value in FINISHED for j in job_ids):
            return
        time.sleep(0.2)


def outcomes(stores: Stores, job_ids: list[int], submitted: int) -> dict:
    """completed / failed with a reason / lost (no row, or still queued) / stuck running."""
    jobs = [stores.jobs.get(j) for j in job_ids]
    counts = {
        "submitted": submitted,
        "completed": sum(j.status.value == "succeeded" for j in jobs),
        "failed_with_reason": sum(j.status.value == "failed" and bool(j.error) for j in jobs),
        "failed_without_reason": sum(j.status.value == "failed" and not j.error for j in jobs),
        "cancelled": sum(j.status.value == "cancelled" for j in jobs),
        "lost": submitted - len(jobs) + sum(j.status.value == "queued" for j in jobs),
        "stuck_running": sum(j.status.value == "running" for j in jobs),
        "ran_twice": sum(len(stores.images.for_job(j.id)) > j.spec.get("num_outputs", 1) for j in jobs),
        "attempts": sorted(j.attempts for j in jobs),
        "failure_reasons": sorted({j.error for j in jobs if j.status.value == "failed"}),
    }
    return counts


def kill_worker_mid_job(app: AppProcess, stores: Stores, prompt: str, attempt: int | None = None) -> float:
    """Wait until the job runs (a step done), kill -9 the worker, wait for its replacement.
    Returns seconds from the kill until a new worker process exists."""
    wait_for(lambda: running_mid_job(stores, prompt, attempt), 180, f"{prompt!r} to be running")
    old = app.worker_pids()
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: [p for p in app.worker_pids() if p not in old], 120, "the worker to restart")
    return time.monotonic() - killed_at


# -- crashes ---------------------------------------------------------------------------------------
def check_worker_kill(app: AppProcess, kills: int = 20, poison: bool = True, size: dict = SLOW) -> dict:
    """kill -9 the worker in the middle of a job `kills` times (one job per kill); with `poison`,
    one more job is killed max_attempts (3) times and must end failed with the reason."""
    started = time.monotonic()
    with open_stores(app.data_dir) as stores:
        client = client_for(app)
        wait_for(app.worker_pids, 60, "the worker")
        pendings, prompts, restart_s = [], [], []
        for i in range(kills):
            prompts.append(f"worker kill {i}")
            pendings.append(submit_generate(client, prompts[-1], i, size))
            restart_s.append(kill_worker_mid_job(app, stores, prompts[-1]))
        if poison:
            prompts.append("worker kill poison")
            pendings.append(submit_generate(client, prompts[-1], 99, size))
            for attempt in (1, 2, 3):
                restart_s.append(kill_worker_mid_job(app, stores, prompts[-1], attempt))
        client_results = [result_or_error(p, JOB_TIMEOUT_S) for p in pendings]
        ids = [job.id for p in prompts if (job := job_with_prompt(stores, p)) is not None]
        wait_finished(stores, ids, 60)
        result = outcomes(stores, ids[:kills], kills)
        if poison:
            result["poison"] = outcomes(stores, ids[kills:], 1)
            result["poison"]["client_error"] = client_results[-1][1]
        result["client_done"] = sum("done" in status for status, _ in client_results[:kills])
        result["worker_restart_s_median"] = round(statistics.median(restart_s), 2) if restart_s else None
        result["worker_restart_s_max"] = round(max(restart_s), 2) if restart_s else None
        result["worker_restarts"] = len(restart_s)
        files = file_report(stores, app.data_dir / "files")
        files.pop("hashes")
        result["files"] = files
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _seed_adapter(stores: Stores, files_root: Path) -> None:
    """An adapter row and file (a stand-in for a trained one) that restarts must keep intact."""
    import hashlib

    from seedling.storage.adapters_common import NewAdapter
    from seedling.storage.files import FileStore

    data = os.urandom(4096)
    rel = "adapters/reliability-check.safetensors"
    FileStore(files_root).write_bytes_atomic(rel, data)
    stores.adapters.add(NewAdapter("reliability-check", "lora", rel, hashlib.sha256(data).hexdigest()))


def _adapter_hashes(stores: Stores, files_root: Path) -> dict:
    from tests.helpers import sha256_file_or_none

    return {a.id: (a.sha256, sha256_file_or_none(files_root / a.file_path)) for a in stores.adapters.list()}


def check_app_kill(workdir: Path, model: Path, kills: int = 5) -> dict:
    """kill -9 app.py in the middle of a job `kills` times, restarting it each time. Odd rounds
    kill the app alone (its worker finishes the job, then exits), even rounds the app and its
    worker together (a power cut: the job is requeued). History rows, image files (hash-checked)
    and an adapter must survive; every job must end finished, and run to completion once."""
    started = time.monotonic()
    data_dir = workdir / "data"
    app = AppProcess(data_dir, model, step_delay_s=STEP_DELAY_S)
    prompts, start_s, lost_history = [], [], 0
    previous: dict = {}
    adapters_before: dict = {}
    try:
        for i in range(kills + 1):
            t0 = time.monotonic()
            app.start()
            start_s.append(time.monotonic() - t0)
            with open_stores(data_dir) as stores:
                if i == 0:
                    _seed_adapter(stores, data_dir / "files")
                    adapters_before = _adapter_hashes(stores, data_dir / "files")
                now = file_report(stores, data_dir / "files")["hashes"]
                lost_history += sum(1 for k, v in previous.items() if now.get(k) != v)
                previous = now
                if i == kills:
                    break
                prompts.append(f"app kill {i}")
                submit_generate(client_for(app), prompts[-1], i, SLOW)
                wait_for(lambda: running_mid_job(stores, prompts[-1]), 180, f"{prompts[-1]!r} to run")
            victims = [app.proc.pid] + (app.worker_pids() if i % 2 else [])
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            app.proc.wait()
        with open_stores(data_dir) as stores:
            ids = [job.id for p in prompts if (job := job_with_prompt(stores, p)) is not None]
            wait_finished(stores, ids, JOB_TIMEOUT_S)
            result = outcomes(stores, ids, kills)
            files = file_report(stores, data_dir / "files")
            now = files.pop("hashes")
            lost_history += sum(1 for k, v in previous.items() if now.get(k) != v)
            adapters_after = _adapter_hashes(stores, data_dir / "files")
        result["history_rows_changed_or_lost"] = lost_history
        result["adapters_intact"] = adapters_after == adapters_before and all(
            a == b for a, b in adapters_after.values()
        )
        result["files"] = files
        result["app_start_s_median"] = round(statistics.median(start_s), 2)
    finally:
        app.stop()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


# -- load ------------------------------------------------------------------------------------------
def check_load(app: AppProcess, clients: int = 10, jobs: int = 5) -> dict:
    """`clients` gradio_client clients, each submitting `jobs` jobs at once, against one app
    (started with --max-queue of at least clients x jobs)."""
    started = time.monotonic()
    log_start = app.log_path.stat().st_size if app.log_path.exists() else 0
    with open_stores(app.data_dir) as stores:
        first_new_id = max((j.id for j in stores.jobs.list(limit=1)), default=0) + 1
    results: list[dict] = []
    lock = threading.Lock()

    def one_client(c: int) -> None:
        client = client_for(app)
        pendings = [submit_generate(client, f"load {c} {j}", c * 100 + j, QUICK) for j in range(jobs)]
        for p in pendings:
            status, error = result_or_error(p, JOB_TIMEOUT_S)
            positions = [
                int(line.split("(position ")[1].split(")")[0])
                for out in p.outputs()
                if (line := str(out[0] if isinstance(out, list | tuple) else out)) and "(position " in line
            ]
            with lock:
                results.append({"done": "done" in status, "error": error, "positions": positions})

    threads = [threading.Thread(target=one_client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOB_TIMEOUT_S * 2)
    wall = time.monotonic() - started
    with open(app.log_path, "rb") as f:
        f.seek(log_start)
        log_text = f.read().decode(errors="replace")
    with open_stores(app.data_dir) as stores:
        ids = [j.id for j in stores.jobs.list(limit=clients * jobs + 10) if j.id >= first_new_id]
        result = outcomes(stores, ids, clients * jobs)
    errors = [r["error"] for r in results if r["error"]]
    positions = [pos for r in results for pos in r["positions"]]
    result |= {
        "clients": clients,
        "jobs_per_client": jobs,
        "client_done": sum(r["done"] for r in results),
        "client_errors": errors[:5],
        "database_is_locked": sum("database is locked" in e for e in errors)
        + log_text.count("database is locked"),
        "jobs_that_showed_a_queue_position": sum(bool(r["positions"]) for r in results),
        "max_queue_position_seen": max(positions, default=0),
        "wall_s": round(wall, 1),
    }
    return result


def check_queue_full(app: AppProcess, max_queue: int) -> dict:
    """The app runs with --max-queue N: with N slow jobs in, one more submit must answer "queue
    full" at once (not wait unseen); the fillers are cancelled afterwards."""
    with open_stores(app.data_dir) as stores:
        client = client_for(app)
        active = stores.jobs.count_active()
        fillers = [submit_generate(client, f"filler {i}", i, SLOW) for i in range(max_queue - active)]
        wait_for(lambda: stores.jobs.count_active() >= max_queue, 60, "the queue to fill")
        t0 = time.monotonic()
        status, error = result_or_error(submit_generate(client, "one too many", 1, QUICK), 60)
        response_s = time.monotonic() - t0
        for job in stores.jobs.list(statuses=None, limit=max_queue + 2):
            if job.spec.get("prompt", "").startswith("filler"):
                stores.jobs.request_cancel(job.id)  # end the fillers quickly
        for p in fillers:
            result_or_error(p, 120)
    return {
        "max_queue": max_queue,
        "answered": bool(error) or bool(status),
        "queue_full_message": error,
        "says_queue_full": error is not None and "queue is full" in error.lower(),
        "response_s": round(response_s, 2),
    }


# -- memory ----------------------------------------------------------------------------------------
def check_rss(app: AppProcess, jobs: int = 200, warmup: int = 20, distinct_prompts: bool = True) -> dict:
    """The worker's resident memory after each of `jobs` consecutive jobs (one client)."""
    started = time.monotonic()
    client = client_for(app)
    (pid,) = wait_for(app.worker_pids, 60, "the worker")
    rss, failures = [], 0
    for i in range(jobs):
        prompt = f"a fox number {i}" if distinct_prompts else f"a fox number {i % 4}"
        status, _error = result_or_error(submit_generate(client, prompt, i, QUICK), 120)
        failures += "done" not in status
        rss.append(vm_rss_kib(pid) / 1024)
    restarted = app.worker_pids() != [pid]
    tail = rss[warmup:] if len(rss) > warmup + 1 else rss
    slope = _slope(list(range(len(tail))), tail) * 100
    return {
        "jobs": jobs,
        "failed_jobs": failures,
        "worker_restarted": restarted,
        "prompts": "distinct" if distinct_prompts else "4 repeated",
        "rss_mib_first": round(rss[0], 1),
        "rss_mib_after_warmup": round(rss[min(warmup, len(rss) - 1)], 1),
        "rss_mib_last": round(rss[-1], 1),
        "rss_mib_max": round(max(rss), 1),
        "slope_mib_per_100_jobs": round(slope, 2),
        "seconds": round(time.monotonic() - started, 1),
        "rss_mib": [round(r, 1) for r in rss],
    }


def check_rss_pipeline(model: Path, jobs: int = 1200, window: int = 400) -> dict:
    """What the worker's growth with new prompts is made of, without the app around it: the
    pipeline in this process, one distinct prompt per job, the heap trimmed after each job as the
    worker does. The text encoder caches up to `cache_size` prompts and its first few hundred new
    prompts grow native memory; after that the curve must be flat (growth over the last `window`
    jobs)."""
    import torch

    from seedling.backend.worker_runtime import trim_heap
    from seedling.model.pipeline import SeedlingPipeline

    started = time.monotonic()
    torch.set_num_threads(1)
    pipe = SeedlingPipeline.from_pretrained(model)
    rss = []
    for i in range(jobs):
        pipe(prompt=f"a fox number {i}", seed=i, height=64, width=64, steps=2)
        trim_heap()
        rss.append(vm_rss_kib(os.getpid()) / 1024)
    w = min(window, jobs - 1)
    return {
        "jobs": jobs,
        "prompts": "distinct",
        "text_encoder_cache": pipe.text_encoder.cache_size,
        "rss_mib_first": round(rss[0], 1),
        "rss_mib_last": round(rss[-1], 1),
        f"growth_mib_last_{w}_jobs": round(rss[-1] - rss[-1 - w], 2),
        "slope_mib_per_100_jobs_last_window": round(_slope(list(range(w)), rss[-w:]) * 100, 2),
        "seconds": round(time.monotonic() - started, 1),
        "rss_mib": [round(r, 1) for r in rss[::10]],
    }


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


# -- disk ------------------------------------------------------------------------------------------
def check_read_only_start(workdir: Path, model: Path) -> dict:
    """app.py on a read-only data folder must exit at once with a sentence and a non-zero code."""
    data_dir = workdir / "ro-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    with read_only(data_dir) as how:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "app.py", "--data-dir", str(data_dir), "--model", str(model), "--port", "1"],
            cwd=REPO_ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    message = (proc.stderr.strip().splitlines() or [""])[-1]
    return {
        "how": how,
        "exit_code": proc.returncode,
        "message": message,
        "says_read_only": "read-only" in message,
        "seconds_to_exit": round(time.monotonic() - t0, 1),
    }


def check_read_only_job(app: AppProcess) -> dict:
    """The images folder turns read-only while the app runs: the job fails with the reason, the
    UI shows it, nothing is left half-done; once writable again jobs run."""
    with open_stores(app.data_dir) as stores:
        client = client_for(app)
        _ok, error = result_or_error(submit_generate(client, "before", 0, QUICK), 120)  # makes images/
        images_dir = app.data_dir / "files" / "images"
        with read_only(images_dir) as how:
            _status, error = result_or_error(submit_generate(client, "while read-only", 1, QUICK), 120)
            job = job_with_prompt(stores, "while read-only")
        status_after, _ = result_or_error(submit_generate(client, "writable again", 2, QUICK), 120)
        files = file_report(stores, app.data_dir / "files")
        files.pop("hashes")
    return {
        "how": how,
        "job_status": job.status.value if job else None,
        "job_error": job.error if job else None,
        "ui_error": error,
        "says_read_only": bool(job and job.error and "read-only" in job.error),
        "after_fix_done": "done" in status_after,
        "files": files,
    }


def check_disk_full(workdir: Path, model: Path) -> dict:
    """ENOSPC injected into the file store's fsync (in this process, the worker runtime that the
    worker runs): the job fails with the reason, no row and no file (temporary or final) is left."""
    from seedling.backend.huey_app import make_memory_huey
    from seedling.backend.services import build_services
    from seedling.backend.settings import Settings
    from seedling.backend.specs import make_spec
    from seedling.storage import files as files_module

    settings = Settings(data_dir=workdir / "full-data", model_path=model)
    svc = build_services(settings, huey=make_memory_huey())
    try:
        real_fsync = files_module.os.fsync

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        job = svc.jobs.submit(make_spec("generate", prompt="disk full", steps=1))
        files_module.os.fsync = full
        try:
            svc.huey.execute(svc.huey.dequeue())
        finally:
            files_module.os.fsync = real_fsync
        failed = svc.jobs.get(job.id)
        with open_stores(settings.data_dir) as stores:
            files = file_report(stores, settings.files_dir)
            files.pop("hashes")
        retry = svc.jobs.rerun(job.id)
        svc.huey.execute(svc.huey.dequeue())
        return {
            "how": "OSError(ENOSPC) from os.fsync in storage/files.py (fault injection)",
            "job_status": failed.status.value,
            "job_error": failed.error,
            "says_disk_full": bool(failed.error and failed.error.startswith("The disk is full")),
            "files": files,
            "rerun_after_space_freed": svc.jobs.get(retry.id).status.value,
        }
    finally:
        svc.close()


def check_storage(workdir: Path, model: Path) -> dict:
    with running_app(workdir / "data", model) as app:
        read_only_job = check_read_only_job(app)
    return {
        "read_only_start": check_read_only_start(workdir, model),
        "read_only_job": read_only_job,
        "disk_full": check_disk_full(workdir, model),
    }


# -- a file half-written when the worker dies ------------------------------------------------------
CRASH_WRITER = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from seedling.backend.huey_app import make_memory_huey
from seedling.backend.services import build_services
from seedling.backend.settings import Settings
from seedling.storage import files

settings = Settings(data_dir=Path({data!r}), model_path=Path({model!r}))
svc = build_services(settings, huey=make_memory_huey())

def dying_fsync(fd):  # the bytes are half on disk, the rename has not happened: die here
    os.ftruncate(fd, os.fstat(fd).st_size // 2)
    os.kill(os.getpid(), signal.SIGKILL)

files.os.fsync = dying_fsync
svc.runtime.run({job_id})
"""


def check_half_written(workdir: Path, model: Path) -> dict:
    """A worker killed (SIGKILL) inside a PNG write, between the partial bytes and the rename:
    no history row may point at the half-written file; the next start removes it and re-runs."""
    from seedling.backend.huey_app import make_memory_huey
    from seedling.backend.services import build_services
    from seedling.backend.settings import Settings
    from seedling.backend.specs import make_spec

    settings = Settings(data_dir=workdir / "hw-data", model_path=model)
    svc = build_services(settings, huey=make_memory_huey())
    job = svc.jobs.submit(make_spec("generate", prompt="half written", steps=1))
    svc.huey.dequeue()  # the crashing process runs it instead
    svc.close()
    code = CRASH_WRITER.format(
        root=str(REPO_ROOT), data=str(settings.data_dir), model=str(model), job_id=job.id
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, check=False, capture_output=True, timeout=300
    )
    with open_stores(settings.data_dir) as stores:
        after_crash = file_report(stores, settings.files_dir)
        status_after_crash = stores.jobs.get(job.id).status.value
    # what the next worker start does: requeue, sweep temporary files, run
    svc = build_services(settings, huey=make_memory_huey())
    try:
        requeued = svc.jobs.requeue_interrupted()
        swept = svc.files.sweep_temp_files(older_than_s=0)
        while (task := svc.huey.dequeue()) is not None:
            svc.huey.execute(task)
        with open_stores(settings.data_dir) as stores:
            after_restart = file_report(stores, settings.files_dir)
        final = svc.jobs.get(job.id)
    finally:
        svc.close()
    after_crash.pop("hashes")
    after_restart.pop("hashes")
    return {
        "killed_by_signal": -proc.returncode if proc.returncode < 0 else None,
        "crash_stderr": proc.stderr.decode(errors="replace")[-500:] if proc.returncode >= 0 else "",
        "status_after_crash": status_after_crash,
        "after_crash": after_crash,
        "requeued": job.id in requeued,
        "temp_files_swept": swept,
        "final_status": final.status.value,
        "after_restart": after_restart,
    }


# -- the command line ------------------------------------------------------------------------------
CHECKS: dict[str, Callable[..., dict]] = {
    "worker-kill": check_worker_kill,
    "app-kill": check_app_kill,
    "load": check_load,
    "queue-full": check_queue_full,
    "rss": check_rss,
    "rss-pipeline": check_rss_pipeline,
    "storage": check_storage,
    "half-written": check_half_written,
}


def run_check(name: str, args: argparse.Namespace, workdir: Path, model: Path) -> dict:
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    print(f"running {name} ...", file=sys.stderr, flush=True)
    if name == "app-kill":
        return check_app_kill(folder, model, kills=args.app_kills)
    if name in ("storage", "half-written"):
        return CHECKS[name](folder, model)
    if name == "rss-pipeline":
        return check_rss_pipeline(model, jobs=args.rss_pipeline_jobs)
    max_queue = {"load": max(32, args.clients * args.jobs + 2), "queue-full": args.max_queue}.get(name, 32)
    with running_app(folder / "data", model, "--max-queue", str(max_queue)) as app:
        if name == "worker-kill":
            return check_worker_kill(app, kills=args.kills)
        if name == "load":
            return check_load(app, clients=args.clients, jobs=args.jobs)
        if name == "queue-full":
            return check_queue_full(app, max_queue=args.max_queue)
        return check_rss(app, jobs=args.rss_jobs, distinct_prompts=args.rss_prompts == "distinct")


def table(results: dict) -> str:
    rows = ["| check | result |", "|---|---|"]
    for name, r in results.items():
        shown = {k: v for k, v in r.items() if k not in ("rss_mib", "attempts")}
        rows.append(f"| {name} | `{json.dumps(shown, default=str)}` |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", nargs="*", default=["all"], help=f"all or any of: {', '.join(CHECKS)}")
    p.add_argument("--model", type=Path, default=None, help="model folder (default: a tiny random model)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "reliability.json")
    p.add_argument("--workdir", type=Path, default=None, help="where data folders go (default: a temp dir)")
    p.add_argument("--kills", type=int, default=20, help="worker kill -9 count")
    p.add_argument("--app-kills", type=int, default=5, help="app kill -9 + restart count")
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--jobs", type=int, default=5, help="jobs per client")
    p.add_argument("--max-queue", type=int, default=2, help="--max-queue of the queue-full check")
    p.add_argument("--rss-jobs", type=int, default=200)
    p.add_argument("--rss-pipeline-jobs", type=int, default=1200, help="jobs of the in-process rss-pipeline check")
    p.add_argument(
        "--rss-prompts",
        choices=("distinct", "repeated"),
        default="distinct",
        help="a new prompt per job, or 4 prompts in turn (the text encoder caches each prompt)",
    )
    args = p.parse_args(argv)
    names = list(CHECKS) if "all" in args.check else args.check
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        p.error(f"unknown check(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="seedling-reliability-") as tmp:
        workdir = args.workdir or Path(tmp)
        model = args.model or make_tiny_model(workdir / "tiny-model")
        results = {}
        for name in names:
            t0 = time.monotonic()
            results[name] = run_check(name, args, workdir, model)
            results[name].setdefault("seconds", round(time.monotonic() - t0, 1))
    report = {"machine": machine(), "model": str(args.model or "tiny random"), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(table(results))
    print(f"\nmachine: {report['machine']}; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
