"""One reader per app process tells waiting requests when their jobs change.

The worker is another process, so nothing calls the app when it commits. Instead of every waiting
request reading the job tables on a timer, one thread asks SQLite `PRAGMA data_version` every
TICK_S (a counter that moves when another connection commits; it reads no table) and, only when
it moved, reads the watched jobs and the queue order in two small queries, then wakes the requests
whose job changed. A waiting request costs a blocked thread, not database reads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TICK_S = 0.02  # how often the reader asks whether anything committed
REFRESH_S = 1.0  # a full re-read even when nothing seems to have moved (belt and braces)


# After close() a waiting request re-reads its job this often instead of at once (a busy loop).
CLOSED_WAIT_S = 0.1


@dataclass(frozen=True)
class JobState:
    """What a waiting request needs to know to decide whether to say something new."""

    status: str
    step: int
    total: int
    position: int | None  # 1 = next to run; None unless queued

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


class JobEvents:
    """Fan-out of job changes to the requests waiting on them (see the module docstring)."""

    def __init__(self, db_path: str | Path, tick_s: float = TICK_S, refresh_s: float = REFRESH_S):
        self._db_path = str(db_path)
        self._tick_s = tick_s
        self._refresh_s = refresh_s
        self._cond = threading.Condition()
        self._states: dict[int, JobState] = {}
        self._watchers: Counter[int] = Counter()
        self._wake = threading.Event()  # a new watcher: read now, not at the next change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reads = 0  # how many times the reader read the jobs (tests and benchmarks look)

    @contextmanager
    def watching(self, job_id: int) -> Iterator[None]:
        """Keep `job_id`'s state up to date while the block runs."""
        with self._cond:
            self._watchers[job_id] += 1
            self._start()
        self._wake.set()
        try:
            yield
        finally:
            with self._cond:
                self._watchers[job_id] -= 1
                if self._watchers[job_id] <= 0:
                    del self._watchers[job_id]
                    self._states.pop(job_id, None)

    def wait(self, job_id: int, seen: JobState | None, timeout: float) -> JobState | None:
        """The job's state once it differs from `seen`, or after `timeout` seconds whatever it is
        (None: not read yet). Call inside `watching(job_id)`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (state := self._states.get(job_id)) == seen or state is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._stop.is_set():  # closed: nothing wakes a waiter now; wait as a poll would
                    self._cond.wait(min(left, CLOSED_WAIT_S))
                    break
                self._cond.wait(left)
            return self._states.get(job_id)

    def state(self, job_id: int) -> JobState | None:
        """The job's last read state (None: not watched or not read yet)."""
        with self._cond:
            return self._states.get(job_id)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._cond:
            self._cond.notify_all()

    def _start(self) -> None:  # under self._cond
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="seedling-job-events", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            last_version = None
            last_read = 0.0
            while not self._stop.is_set():
                woken = self._wake.wait(self._tick_s)
                self._wake.clear()
                with self._cond:
                    watched = list(self._watchers)
                if not watched:
                    continue
                try:
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    now = time.monotonic()
                    if woken or version != last_version or now - last_read >= self._refresh_s:
                        last_version, last_read = version, now
                        self._publish(self._read(conn, watched))
                except sqlite3.Error:  # a locked or busy moment: the next tick tries again
                    continue
        finally:
            conn.close()

    def _read(self, conn: sqlite3.Connection, watched: list[int]) -> dict[int, JobState]:
        self.reads += 1
        queue = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM jobs WHERE status = 'queued' ORDER BY coalesce(queued_at, 0.0), id"
            )
        ]
        positions = {job_id: i + 1 for i, job_id in enumerate(queue)}
        marks = ",".join("?" * len(watched))
        rows = conn.execute(
            f"SELECT id, status, progress_step, progress_total FROM jobs WHERE id IN ({marks})", watched
        )
        return {
            job_id: JobState(status, step or 0, total or 0, positions.get(job_id))
            for job_id, status, step, total in rows
        }

    def _publish(self, states: dict[int, JobState]) -> None:
        with self._cond:
            changed = False
            for job_id, state in states.items():
                if job_id in self._watchers and self._states.get(job_id) != state:
                    self._states[job_id] = state
                    changed = True
            if changed:
                self._cond.notify_all()
