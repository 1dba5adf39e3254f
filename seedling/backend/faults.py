"""Fault injection for the crash suite (tests/test_crash_points.py, scripts/reliability.py).

SEEDLING_TEST_CRASH_AT=<point>[,<point>...] (or "cycle": job N at CRASH_POINTS[N % 5]) makes the worker kill itself (SIGKILL: no cleanup,
like a power cut) when a job reaches one of those commit points, once per job and point: what was
killed is recorded in SEEDLING_TEST_CRASH_LOG, so the restarted worker gets past the point.
SEEDLING_TEST_MAX_BACKOFF_S caps the supervisor's restart back-off (a worker that is killed on
purpose right after it starts would otherwise look like a crash loop). Unset in normal use.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

CRASH_AT_ENV = "SEEDLING_TEST_CRASH_AT"
CRASH_LOG_ENV = "SEEDLING_TEST_CRASH_LOG"
MAX_BACKOFF_ENV = "SEEDLING_TEST_MAX_BACKOFF_S"
# Every write of a job, in order: claimed (the RUNNING row), a progress row, the output files
# (before their rows), the outputs + SUCCEEDED committed, the final timings written.
CRASH_POINTS = ("claimed", "progress", "files_written", "outputs_committed", "finished")


def crash_point(point: str, job_id: int) -> None:
    wanted = os.environ.get(CRASH_AT_ENV, "")
    if wanted == "cycle":  # each job at one point, by its id: every point is hit, every job once
        wanted = CRASH_POINTS[job_id % len(CRASH_POINTS)]
    if point not in wanted.split(","):
        return
    log_path = Path(os.environ.get(CRASH_LOG_ENV) or "crash-log.txt")
    done = log_path.read_text().split() if log_path.exists() else []
    key = f"{point}:{job_id}"
    if key in done:
        return
    with open(log_path, "a") as f:
        f.write(key + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)
