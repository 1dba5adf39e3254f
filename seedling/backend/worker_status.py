"""What the workers are doing while nobody's job runs yet (starting, loading the model, compiling
the fused CPU kernels on a machine's first start), so a person whose job waits is told why.

Each worker writes `<data dir>/workers/<worker id>.json` ({phase, pid, since}) atomically; the
app reads them. A file whose process is gone is ignored (and removed)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from seedling.atomic import write_atomic

READY = "ready"
FOLDER = "workers"


def _path(data_dir: Path, worker_id: str) -> Path:
    return Path(data_dir) / FOLDER / (re.sub(r"[^A-Za-z0-9_.-]", "_", worker_id)[:120] + ".json")


def report(data_dir: Path, worker_id: str, phase: str) -> None:
    """Record this worker's phase (a phrase: "loading the model", ...; READY when it takes jobs)."""
    path = _path(data_dir, worker_id)
    try:
        write_atomic(path, json.dumps({"phase": phase, "pid": os.getpid(), "since": time.time()}))
    except OSError:  # a full or read-only folder: the status is a courtesy, jobs still run
        pass


def _read(path: Path) -> tuple[int, str, float] | None:
    """A status file's (pid, phase, since); None if it is missing or unreadable."""
    try:
        state = json.loads(path.read_text())
        return int(state["pid"]), str(state["phase"]), float(state["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def phase(data_dir: Path, worker_id: str) -> str | None:
    """The phase this worker last reported (READY: it takes jobs); None before its first report."""
    state = _read(_path(data_dir, worker_id))
    return state[1] if state else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def waiting_because(data_dir: Path) -> str | None:
    """Why queued jobs wait, if it is start-up: the phase of the newest live worker when none is
    ready; None when a worker is ready (or none has reported: the queue explains itself)."""
    folder = Path(data_dir) / FOLDER
    phases: list[tuple[float, str]] = []
    for path in folder.glob("*.json") if folder.exists() else []:
        if (state := _read(path)) is None:
            continue
        pid, phase, since = state
        if not _alive(pid):
            path.unlink(missing_ok=True)
            continue
        if phase == READY:
            return None
        phases.append((since, phase))
    if not phases:
        return None
    since, phase = max(phases)
    return f"{phase} (for {time.time() - since:.0f} s)"
