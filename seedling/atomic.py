"""The one way the project writes a file: to a temporary name in the final folder, fsynced, then
renamed over the final name (and the folder fsynced), so a reader or a crash never sees half a
file. Torch-free, so storage and backend code can use it without loading the model stack.

    write_atomic(path, b"bytes")                       # or a str (UTF-8)
    write_atomic(path, lambda tmp: save_file(t, tmp))  # a writer that takes the temp path
    write_all_atomic({a: ..., b: ...})                 # every file written, then all renamed
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

Content = bytes | str | Callable[[Path], object]
TEMP_GLOB = ".*.tmp"  # what a process killed mid-write leaves behind (see storage.files.sweep_temp_files)


def temp_name(path: Path) -> Path:
    """A hidden name beside `path` that no other writer picks (several processes may write the same file)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(tmp: Path, content: Content) -> None:
    if callable(content):
        content(tmp)
    else:
        with open(tmp, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
    # writers such as safetensors' save_file close their file without fsync: sync it here
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


def write_all_atomic(files: Mapping[str | os.PathLike, Content]) -> list[Path]:
    """Write every file to its temp name, then rename them all: if any write fails none is replaced."""
    finals = [Path(p) for p in files]
    tmps = [temp_name(p) for p in finals]
    try:
        for final, tmp, content in zip(finals, tmps, files.values()):
            final.parent.mkdir(parents=True, exist_ok=True)
            _write_temp(tmp, content)
        for final, tmp in zip(finals, tmps):
            os.replace(tmp, final)
        for folder in {f.parent for f in finals}:
            fsync_dir(folder)
    finally:
        for tmp in tmps:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
    return finals


def write_atomic(path: str | os.PathLike, content: Content) -> Path:
    """Write one file atomically; see the module docstring. Returns its path."""
    return write_all_atomic({path: content})[0]
