"""Job finished -> client has the result, through the whole app under load, push vs the old polling.

    python bench/bench_ui_latency.py [--clients 8] [--jobs 4] [--modes poll,push] [--baseline REV]
                                     [--rounds 1] [--out runs/ui_latency.json]

For each mode it starts `python app.py --watch MODE` (a random-weight tiny model, a fresh data
folder, 127.0.0.1), warms the worker with one job, then has `--clients` gradio_client clients,
each in its own process as each person has their own browser, submit `--jobs` Generate jobs at
once. For every job it records the moment the client's
result callback has the result (files fetched) and compares it with the job's finished_at in the
database (same machine, same clock). Meanwhile one more client calls /job_status in a loop and
records how long each call takes. The modes run one after the other in the same run, on the same
model, so a busy machine slows both alike. `--baseline REV` adds a row for the app as it was at git
revision REV (checked out into a temporary worktree, run in push mode), and `--rounds N` repeats
all rows N times, alternating, for the side-by-side comparison with earlier code. Prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # this checkout's seedling, the one app.py below runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def start_app(data_dir: Path, model: Path, watch: str, max_queue: int, log_path: Path, tree: Path = REPO_ROOT):
    port = _free_port()
    cmd = [
        sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
        "--model", str(model), "--watch", watch, "--max-queue", str(max_queue),
    ]  # fmt: skip
    env = {
        **os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": str(tree),  # that tree's seedling, also in the worker process it starts
    }  # fmt: skip
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, cwd=tree, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited early:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"app did not answer in 180 s; see {log_path}")


def _job_id(result) -> int:
    """The job id from the status line ("Job 12: done in 0.51 s"), the first output the API returns."""
    status = result[0] if isinstance(result, (list, tuple)) else result
    match = re.search(r"Job (\d+)", str(status))
    if match is None:
        raise RuntimeError(f"no job id in {result!r}")
    return int(match.group(1))


def _generate_args(i: int, steps: int) -> dict:
    return {
        "prompt": f"a red fox number {i}", "width": 128, "height": 128, "steps": steps, "guidance": 0,
        "seed": i, "num_outputs": 1, "api_name": "/generate",
    }  # fmt: skip


def _client(url: str, first: int, jobs: int, steps: int, ready, go, out) -> None:
    """One person's client, in its own process: connect, wait for the start, submit `jobs` jobs at
    once, and record when each result is in (its files fetched)."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    received: dict[int, float] = {}
    lock = threading.Lock()

    def on_result(*outputs):
        now = time.time()
        with lock:
            received[_job_id(outputs)] = now

    ready.put(1)
    go.wait()
    submitted = [
        client.submit(**_generate_args(first + j, steps), result_callbacks=[on_result]) for j in range(jobs)
    ]
    errors = []
    for job in submitted:
        try:
            job.result(timeout=900)
        except Exception as err:  # noqa: BLE001 - counted and reported, not fatal to the run
            errors.append(str(err)[:200])
    deadline = time.monotonic() + 30  # the callbacks run just after result() returns
    while len(received) < len(submitted) - len(errors) and time.monotonic() < deadline:
        time.sleep(0.01)
    out.put({"received": received, "errors": errors})


def run_mode(
    watch: str, model: Path, tmp: Path, clients: int, jobs: int, steps: int, tree: Path = REPO_ROOT, label: str = ""
) -> dict:
    import multiprocessing as mp

    from gradio_client import Client

    label = label or watch
    data_dir = Path(tempfile.mkdtemp(prefix=f"data-{watch}-", dir=tmp))
    proc, url = start_app(
        data_dir, model, watch, max(32, clients * jobs + 1), tmp / f"{watch}.log", tree=tree
    )
    ctx = mp.get_context("spawn")
    try:
        warm = Client(url, verbose=False)
        warm.predict(**_generate_args(10_000, steps))  # the worker loads the model
        ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        people = [
            ctx.Process(target=_client, args=(url, c * jobs, jobs, steps, ready, go, out)) for c in range(clients)
        ]
        for person in people:
            person.start()
        for _ in people:
            ready.get(timeout=300)

        stop = threading.Event()
        status_calls: list[float] = []

        def probe():  # what another person's /job_status call meets under this load
            while not stop.is_set():
                t0 = time.perf_counter()
                warm.predict(1, api_name="/job_status")
                status_calls.append(time.perf_counter() - t0)
                stop.wait(0.5)

        prober = threading.Thread(target=probe, daemon=True)
        t_start = time.time()
        go.set()
        prober.start()
        results = [out.get(timeout=1200) for _ in people]
        wall = time.time() - t_start
        stop.set()
        prober.join(timeout=60)
        for person in people:
            person.join(timeout=60)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    received = {job_id: t for r in results for job_id, t in r["received"].items()}
    db = sqlite3.connect(data_dir / "history.db")
    finished = dict(db.execute("SELECT id, finished_at FROM jobs"))
    db.close()
    lags = sorted(received[job_id] - finished[job_id] for job_id in received)
    return {
        "watch": label,
        "jobs_measured": len(lags),
        "jobs_submitted": clients * jobs,
        "errors": [e for r in results for e in r["errors"]],
        "wall_s": wall,
        "lag_s": lags,
        "per_job": [
            {"job": job_id, "finished_at": finished[job_id], "received": received[job_id]} for job_id in sorted(received)
        ],
        "job_status_s": status_calls,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--jobs", type=int, default=4, help="jobs each client submits at once")
    p.add_argument("--steps", type=int, default=0, help="sampling steps (0: the model's default)")
    p.add_argument("--modes", default="poll,push", help="comma-separated: poll (old), push (new)")
    p.add_argument("--baseline", default=None, help="git revision whose app also runs (push mode), for comparison")
    p.add_argument("--rounds", type=int, default=1, help="repeat all rows, alternating")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    from seedling.model.pipeline import SeedlingPipeline

    tmp = Path(tempfile.mkdtemp(prefix="seedling-ui-bench-"))
    model = tmp / "tiny-random"
    SeedlingPipeline.from_config("tiny", seed=0).save_pretrained(str(model))
    rows = [(watch.strip(), REPO_ROOT, watch.strip()) for watch in args.modes.split(",")]
    if args.baseline:
        old = tmp / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.baseline], cwd=REPO_ROOT, check=True,
                       capture_output=True)  # fmt: skip
        rows.insert(0, ("push", old, f"@{args.baseline[:10]}"))
    runs = []
    try:
        for _ in range(args.rounds):
            for watch, tree, label in rows:
                runs.append(run_mode(watch, model, tmp, args.clients, args.jobs, args.steps, tree, label))
    finally:
        if args.baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "baseline")], cwd=REPO_ROOT, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"CPU: {_cpu_name()} ({os.cpu_count()} logical CPUs)  load: {args.clients} clients x {args.jobs} jobs")
    print("job finished (finished_at) -> client has the result, seconds; /job_status call, seconds")
    header = f"{'app':<12}{'jobs':>6}{'p50':>8}{'p90':>8}{'max':>8}{'status p50':>12}{'status max':>12}{'wall':>8}"
    print(header)
    for run in runs:
        lag, st = run["lag_s"], run["job_status_s"]
        run["summary"] = {
            "p50": _pct(lag, 0.5), "p90": _pct(lag, 0.9), "max": max(lag) if lag else float("nan"),
            "job_status_p50": _pct(st, 0.5), "job_status_max": max(st) if st else float("nan"),
        }  # fmt: skip
        s = run["summary"]
        print(
            f"{run['watch']:<12}{run['jobs_measured']:>3}/{run['jobs_submitted']:<2}{s['p50']:>8.2f}{s['p90']:>8.2f}"
            f"{s['max']:>8.2f}{s['job_status_p50']:>12.2f}{s['job_status_max']:>12.2f}{run['wall_s']:>8.1f}"
        )
    result = {
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "clients": args.clients,
        "jobs_per_client": args.jobs,
        "steps": args.steps,
        "runs": runs,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
