"""Fault injection for the crash suite (tests/test_crash_points.py, scripts/reliability.py).

SEEDLING_TEST_CRASH_AT=<point> makes the worker kill itself (SIGKILL: no cleanup, like a power
cut) when a job reaches that commit point, once per job: the job ids already killed are recorded
in SEEDLING_TEST_CRASH_LOG, so the restarted worker gets past the point. Unset in normal use.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

CRASH_AT_ENV = "SEEDLING_TEST_CRASH_AT"
CRASH_LOG_ENV = "SEEDLING_TEST_CRASH_LOG"
CRASH_POINTS = ("claimed", "progress", "files_written", "outputs_committed", "finished")


def crash_point(point: str, job_id: int) -> None:
    if os.environ.get(CRASH_AT_ENV) != point:
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
