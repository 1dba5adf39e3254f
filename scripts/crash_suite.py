"""The crash suite (issue 21): kill the worker (SIGKILL) at every commit point of a job and count
what each job left behind. Real processes on 127.0.0.1, the tiny random-weight model.

- `app`: `python app.py` (its supervisor restarts the worker) on the SQLite queue; the worker
  kills itself once per job at CRASH_POINTS[job id % 5] (claimed, progress, files written,
  outputs committed, finished).
- `redis`: a redis-server started here, three `seedling.backend.worker --redis` processes sharing
  it; one of them kills itself the same way and is restarted under a new worker id (as a
  supervisor would) while the other two keep working; its jobs come back when their lease expires.

Checked for every job: it ended SUCCEEDED (0 lost), with exactly `num_outputs` output rows
(0 jobs with two sets), every file matching its hash, no orphan or temporary files.

    python -m scripts.crash_suite --jobs 50 --redis-jobs 150   # from the repository root: table + runs/crash_suite.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seedling.backend import worker_status
from seedling.backend.context import STEP_DELAY_ENV
from seedling.backend.faults import CRASH_AT_ENV, CRASH_LOG_ENV, CRASH_POINTS, MAX_BACKOFF_ENV
from seedling.backend.services import build_services
from seedling.backend.settings import Settings
from seedling.backend.specs import make_spec
from seedling.storage.jobs_common import JobStatus
from tests.conftest import AppProcess, free_port
from tests.helpers import file_report, open_stores, wait_for

REPO_ROOT = Path(__file__).resolve().parent.parent
NUM_OUTPUTS = 2
LEASE_S = 2.0  # the Redis workers' lease: a killed worker's job is back on the queue ~2 s later


def submit(settings: Settings, n: int) -> list[int]:
    services = build_services(settings)
    try:
        return [
            services.jobs.submit(
                make_spec("generate", prompt=f"crash job {i}", seed=i, steps=2, num_outputs=NUM_OUTPUTS)
            ).id
            for i in range(n)
        ]
    finally:
        services.close()


def wait_done(data_dir: Path, ids: list[int], timeout_s: float, on_poll=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open_stores(data_dir) as stores:
            if all(stores.jobs.get(i).status.finished for i in ids):
                return
        if on_poll is not None:
            on_poll()
        time.sleep(0.2)


def outcome(data_dir: Path, ids: list[int], crash_log: Path) -> dict:
    """What the jobs left: statuses, output sets, files; the kills from the worker's crash log."""
    kills = crash_log.read_text().split() if crash_log.exists() else []
    with open_stores(data_dir) as stores:
        jobs = [stores.jobs.get(i) for i in ids]
        outputs = {i: [im.output_index for im in stores.images.for_job(i)] for i in ids}
        files = file_report(stores, data_dir / "files")
    files.pop("hashes")
    return {
        "jobs": len(ids),
        "kills": len(kills),
        "kills_by_point": {p: sum(k.startswith(p + ":") for k in kills) for p in CRASH_POINTS},
        "succeeded": sum(j.status == JobStatus.SUCCEEDED for j in jobs),
        "lost": sum(j.status != JobStatus.SUCCEEDED for j in jobs),
        "two_sets_of_outputs": sum(len(o) > NUM_OUTPUTS for o in outputs.values()),
        "wrong_outputs": sum(sorted(o) != list(range(NUM_OUTPUTS)) for o in outputs.values()),
        "max_attempts_seen": max((j.attempts for j in jobs), default=0),
        "errors": sorted({j.error for j in jobs if j.error}),
        "files": files,
    }


def run_app_suite(work: Path, model: Path, n_jobs: int, timeout_s: float = 900.0) -> dict:
    """One app (supervised worker, SQLite queue); the worker dies at each job's commit point."""
    data = work / "app" / "data"
    crash_log = work / "app-crash.log"
    app = AppProcess(
        data, model, env={CRASH_AT_ENV: "cycle", CRASH_LOG_ENV: str(crash_log), MAX_BACKOFF_ENV: "0.2"}
    )
    start = time.monotonic()
    app.start()
    try:
        ids = submit(Settings(data_dir=data, model_path=model, max_queue=max(32, n_jobs)), n_jobs)
        wait_done(data, ids, timeout_s)
    finally:
        app.stop()
    result = outcome(data, ids, crash_log)
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def _redis(work: Path) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _ready(data: Path, worker_ids: list[str], procs: list[subprocess.Popen]) -> bool:
    if any(p.poll() is not None for p in procs):
        raise RuntimeError(f"a worker exited before it was ready (exit codes {[p.poll() for p in procs]})")
    return all(worker_status.phase(data, w) == worker_status.READY for w in worker_ids)


def _worker(
    data: Path, model: Path, url: str, worker_id: str, log: Path, env: dict, step_delay_s: float
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "seedling.backend.worker", "--data-dir", str(data), "--model", str(model),
           "--redis", url, "--worker-id", worker_id, "--lease-s", str(LEASE_S)]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, STEP_DELAY_ENV: str(step_delay_s), **env})  # fmt: skip


def run_redis_suite(
    work: Path, model: Path, n_jobs: int, timeout_s: float = 900.0, step_delay_s: float = 0.05
) -> dict:
    """Three workers on one Redis queue; worker 0 dies at each of its jobs' commit points and is
    restarted under a new id; the others requeue its jobs once their lease expires. A longer
    `step_delay_s` lets the restarted victim take (and die on) more of the jobs."""
    data = work / "redis" / "data"
    data.mkdir(parents=True, exist_ok=True)
    crash_log = work / "redis-crash.log"
    log = work / "redis-workers.log"
    server, url = _redis(work)
    start = time.monotonic()
    victim_env = {CRASH_AT_ENV: "cycle", CRASH_LOG_ENV: str(crash_log)}
    workers = {f"steady-{k}": _worker(data, model, url, f"steady-{k}", log, {}, step_delay_s) for k in (1, 2)}
    victim = {"n": 0, "proc": _worker(data, model, url, "victim-0", log, victim_env, step_delay_s)}

    def restart_victim() -> None:  # what a supervisor does: a dead worker comes back, new id
        if victim["proc"].poll() is not None:
            victim["n"] += 1
            victim["proc"] = _worker(data, model, url, f"victim-{victim['n']}", log, victim_env, step_delay_s)

    try:
        # Jobs only once all three take them: the tiny model's jobs take well under a second, so
        # two workers that start first (a loaded machine) could run every job before the victim does.
        first = ["steady-1", "steady-2", "victim-0"]
        wait_for(lambda: _ready(data, first, [*workers.values(), victim["proc"]]), timeout_s,
                 f"workers {first} to say they are ready (their log: {log})", poll_s=0.1)  # fmt: skip
        settings = Settings(data_dir=data, model_path=model, redis_url=url, max_queue=max(32, n_jobs))
        ids = submit(settings, n_jobs)
        wait_done(data, ids, timeout_s, on_poll=restart_victim)
    finally:
        for proc in [*workers.values(), victim["proc"]]:
            proc.send_signal(signal.SIGINT)
        for proc in [*workers.values(), victim["proc"]]:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.terminate()
        server.wait(10)
    result = outcome(data, ids, crash_log)
    result["seconds"] = round(time.monotonic() - start, 1)
    result["victim_restarts"] = victim["n"]
    return result


def _row(name: str, r: dict) -> str:
    points = " / ".join(str(r["kills_by_point"][p]) for p in CRASH_POINTS)
    f = r["files"]
    return (f"| {name} | {r['jobs']} | {r['kills']} ({points}) | {r['succeeded']} | {r['lost']} | "
            f"{r['two_sets_of_outputs']} | {f['hash_mismatch_or_missing']} | {f['orphan_files']} | "
            f"{f['temp_files_left']} | {r['seconds']} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=50, help="jobs through the app (one kill each)")
    p.add_argument("--redis-jobs", type=int, default=150, help="jobs on the 3-worker Redis queue")
    p.add_argument("--redis-step-delay", type=float, default=0.5, help="seconds each step of a Redis job waits")
    p.add_argument("--out", type=Path, default=Path("runs/crash_suite.json"))
    args = p.parse_args(argv)
    from seedling.model.pipeline import SeedlingPipeline

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "tiny-model"
        SeedlingPipeline.from_config("tiny", seed=0).save_pretrained(str(model))
        results = {"app": run_app_suite(work, model, args.jobs)} if args.jobs else {}
        if args.redis_jobs:
            results["redis"] = run_redis_suite(work, model, args.redis_jobs, step_delay_s=args.redis_step_delay)
    print("| suite | jobs | kills (claimed / progress / files / committed / finished) | succeeded | lost | "
          "two sets | bad files | orphans | temp files | s |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for name, r in results.items():
        print(_row(name, r))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
