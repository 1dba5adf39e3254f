"""Runs the worker as a child process, restarts it if it dies, stops it with the app.

With the SQLite queue one worker serves a data folder; it holds `worker.lock` there for its
whole life (an flock: the kernel drops it when the process dies, kill -9 included). A worker
whose app was killed finishes its running job and exits on its own; a restarted app waits for
that (`wait_for_previous_worker`) before it requeues interrupted jobs, so no job runs twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from seedling.backend.faults import MAX_BACKOFF_ENV

log = logging.getLogger(__name__)

LOCK_NAME = "worker.lock"
# A worker that lived this long was not crashing at start-up: the next restart is quick again.
STABLE_AFTER_S = 5.0


class WorkerLock:
    """The one-worker-per-data-folder lock (SQLite queue only; Redis workers share a queue)."""

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, timeout_s: float = 0.0, poll_s: float = 0.1) -> bool:
        """Take the lock (waiting up to timeout_s) and write this pid into it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def holder(self) -> int | None:
        """The pid written by the process that holds (or last held) the lock."""
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None


def wait_for_previous_worker(data_dir: str | Path, timeout_s: float = 120.0) -> bool:
    """Wait until no worker holds the data folder's lock (one left by a killed app finishes its
    job first). After timeout_s, kill it: its job is requeued and resumes from its checkpoint.
    Returns True if the folder was free without killing anything."""
    lock = WorkerLock(data_dir)
    if lock.acquire(0.0):
        lock.release()
        return True
    pid = lock.holder()
    log.warning("worker %s of an earlier run is still finishing a job; waiting up to %.0f s", pid, timeout_s)
    if lock.acquire(timeout_s):
        lock.release()
        return True
    pid = lock.holder()
    if pid is not None and _is_worker(pid):
        log.error("worker %d did not finish in %.0f s; killing it", pid, timeout_s)
        os.kill(pid, signal.SIGKILL)
        lock.acquire(10.0)
        lock.release()
    return False


def _is_worker(pid: int) -> bool:
    try:
        return b"seedling.backend.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return sys.platform != "linux"  # no /proc to check: trust the lock file


class WorkerSupervisor:
    """`on_restart(dead_worker_id)` runs before every restart after a crash (the app requeues
    the jobs that worker held). Each start gets a new worker id (`--worker-id`)."""

    def __init__(
        self,
        args: Sequence[str],
        on_restart: Callable[[str], object] = lambda worker_id: None,
        max_backoff_s: float = 30.0,
        python: str = sys.executable,
        stable_after_s: float = STABLE_AFTER_S,
    ):
        self._cmd = [python, "-m", "seedling.backend.worker", *args, "--parent-pid", str(os.getpid())]
        self.worker_id = ""
        self._on_restart = on_restart
        self._max_backoff_s = float(os.environ.get(MAX_BACKOFF_ENV) or max_backoff_s)
        self._stable_after_s = stable_after_s
        self._proc: subprocess.Popen | None = None
        self._started_at = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        self.worker_id = f"{socket.gethostname()}:supervised:{secrets.token_hex(4)}"
        self._proc = subprocess.Popen([*self._cmd, "--worker-id", self.worker_id])
        self._started_at = time.monotonic()
        log.info("worker started (pid %d)", self._proc.pid)

    def _watch(self) -> None:
        backoff = min(1.0, self._max_backoff_s)
        while not self._stopping.is_set():
            assert self._proc is not None
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - self._started_at >= self._stable_after_s:
                backoff = min(1.0, self._max_backoff_s)  # it ran fine, then died (killed, out of memory): no crash loop
            log.error("worker exited with code %s; restarting in %.0f s", code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff_s)
            try:
                self._on_restart(self.worker_id)
            except Exception:  # a failed requeue must not stop the supervisor from restarting
                log.exception("on_restart failed")
            self.restarts += 1
            self._spawn()

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGINT (huey: finish the running job, then exit); SIGKILL after timeout_s. A killed job
        stays "running" and is requeued at the next start."""
        self._stopping.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else None
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("worker did not stop in %.0f s; killing it", timeout_s)
            proc.kill()
            proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        return proc.returncode
