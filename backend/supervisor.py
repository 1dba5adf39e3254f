"""Runs the worker as a child process, restarts it if it dies, stops it with the app."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


class WorkerSupervisor:
    """`on_restart` runs before every restart after a crash (the app requeues interrupted jobs)."""

    def __init__(
        self,
        args: Sequence[str],
        on_restart: Callable[[], object] = lambda: None,
        max_backoff_s: float = 30.0,
        python: str = sys.executable,
    ):
        self._cmd = [python, "-m", "backend.worker", *args, "--parent-pid", str(os.getpid())]
        self._on_restart = on_restart
        self._max_backoff_s = max_backoff_s
        self._proc: subprocess.Popen | None = None
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
        self._proc = subprocess.Popen(self._cmd)
        log.info("worker started (pid %d)", self._proc.pid)

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            assert self._proc is not None
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            log.error("worker exited with code %s; restarting in %.0f s", code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self._max_backoff_s)
            try:
                self._on_restart()
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
