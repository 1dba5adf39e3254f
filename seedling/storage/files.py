"""The file store: PNGs written atomically under the data folder, named by random ids.

A file is encoded in memory, hashed, written to a temporary name in its final folder, fsynced,
renamed into place and the folder fsynced; only then may a row point at it. Paths come from
uuid4 and a fixed folder name, never from user text, and every path read back is checked to lie
inside the store.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from seedling.atomic import TEMP_GLOB, write_atomic
from seedling.storage.pngmeta import png_info

Folder = Literal["images", "uploads", "masks", "adapters"]

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
# sqlite3 reports these as OperationalError text, without an errno
_SQLITE_FULL = ("database or disk is full",)
_SQLITE_READ_ONLY = ("attempt to write a readonly database", "unable to open database file")


class StorageError(OSError):
    """A write under the data folder failed for a reason a person can fix (the disk is full,
    the folder is read-only). str() is a sentence for the UI; errno is the original one."""

    def __init__(self, message: str, errno_: int | None = None):
        super().__init__(message)
        self.errno = errno_

    def __str__(self) -> str:
        return str(self.args[0])


def display_path(path: str | os.PathLike | None) -> str:
    """A path as a person finds it: relative to the working directory when inside it."""
    if path is None:
        return "the data folder"
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def storage_problem(
    err: BaseException, what: str = "save the result", action: str = "press Run again"
) -> str | None:
    """A sentence for a disk-full or read-only failure (an OSError with its errno, or SQLite's
    text for the same), or None when `err` is something else."""
    if isinstance(err, StorageError):
        return str(err)
    code = getattr(err, "errno", None)
    orig = getattr(err, "orig", err)  # SQLAlchemy wraps the sqlite3 error (whose text holds no SQL)
    text = str(orig).lower() if isinstance(orig, sqlite3.Error) else ""
    path = getattr(err, "filename", None)
    if code in DISK_FULL_ERRNOS or any(t in text for t in _SQLITE_FULL):
        where = f" to {display_path(path)}" if path else ""
        return f"The disk is full: could not {what}{where}. Free some space and {action}."
    if code in READ_ONLY_ERRNOS or any(t in text for t in _SQLITE_READ_ONLY):
        where = f" to {display_path(path)}" if path else ""
        return (
            f"The data folder is read-only: could not {what}{where}. Make the folder writable "
            f"(or start the app with another --data-dir) and {action}."
        )
    return None


def ensure_writable(*folders: str | os.PathLike) -> None:
    """Create each folder if needed and prove it takes a file (write, fsync, delete); StorageError
    with a sentence saying what to do if not. A real write is the only honest test: permission
    bits do not stop root, and a read-only mount or a full disk shows only when writing."""
    for folder in map(Path, folders):
        probe = folder / f".write-test-{uuid.uuid4().hex[:8]}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"seedling")
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as err:
            named = OSError(err.errno, err.strerror, str(folder))
            message = storage_problem(named, what="write files", action="start the app again")
            if message is None:
                message = f"Cannot use the data folder {display_path(folder)}: {err.strerror or err}."
            raise StorageError(message, err.errno) from err


_FOLDERS: tuple[str, ...] = ("images", "uploads", "masks", "adapters")


@dataclass(frozen=True)
class StoredFile:
    rel_path: str  # posix path relative to the store root
    sha256: str  # of the file's bytes
    pixel_hash: str  # of mode, size and pixels: equal for the same picture re-encoded
    size: int  # bytes
    width: int
    height: int


def pixel_hash(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FileStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def save_png(
        self, image: Image.Image, folder: Folder, parameters: str | None = None, tag: str | None = None
    ) -> StoredFile:
        """Write a PNG atomically under a new name. `tag` (e.g. "job12") ends the name, so the files
        of a job killed before it recorded them can be found (`remove_tagged`)."""
        if folder not in _FOLDERS:
            raise ValueError(f"unknown folder {folder!r}")
        if tag is not None and not re.fullmatch(r"[a-z0-9]{1,32}", tag):
            raise ValueError(f"a file tag is 1-32 lower-case letters and digits, not {tag!r}")
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=png_info(parameters) if parameters is not None else None)
        data = buf.getvalue()
        name = uuid.uuid4().hex
        rel_path = f"{folder}/{name[:2]}/{name}" + (f"-{tag}" if tag else "") + ".png"
        self.write_bytes_atomic(rel_path, data)
        return StoredFile(
            rel_path=rel_path,
            sha256=hashlib.sha256(data).hexdigest(),
            pixel_hash=pixel_hash(image),
            size=len(data),
            width=image.width,
            height=image.height,
        )

    def write_bytes_atomic(self, rel_path: str, data: bytes) -> Path:
        final = self.path(rel_path)
        try:
            write_atomic(final, data)
        except OSError as err:
            # write()/fsync() name no file, open() names the temporary one: name the final file
            what = "save the image" if final.suffix == ".png" else "save the file"
            message = storage_problem(OSError(err.errno, err.strerror, str(final)), what=what)
            if message is None:
                raise
            raise StorageError(message, err.errno) from err
        return final

    def sweep_temp_files(self, older_than_s: float = 60.0) -> int:
        """Remove temporary files a process killed mid-write left behind (never rows' files:
        those have no leading dot). Returns how many were removed."""
        removed = 0
        cutoff = time.time() - older_than_s
        for tmp in self.root.rglob(TEMP_GLOB):
            try:
                if tmp.is_file() and tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except OSError:
                pass
        return removed

    def remove_tagged(self, folder: str, tag: str) -> int:
        """Remove the files of `folder` written with `tag` (a job's outputs that were never
        recorded: call it only when no row can point at them). Returns how many were removed."""
        removed = 0
        base = self.root / folder
        for path in base.glob(f"*/*-{tag}.png") if base.exists() else []:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
        return removed

    def sweep_orphans(self, folder: str, referenced: set[str], older_than_s: float) -> int:
        """Remove finished files in `folder` that no row points at (`referenced`: relative paths)
        and that are older than older_than_s: outputs written by a worker killed before it
        committed their rows. Returns how many were removed."""
        removed = 0
        cutoff = time.time() - older_than_s
        base = self.root / folder
        for path in base.rglob("*.png") if base.exists() else []:
            rel = path.relative_to(self.root).as_posix()
            try:
                if rel not in referenced and path.is_file() and path.stat().st_mtime <= cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                pass
        return removed

    def path(self, rel_path: str) -> Path:
        """Absolute path of a stored file; refuses anything outside the store."""
        path = (self.root / rel_path).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"path {rel_path!r} is outside the file store")
        return path

    def exists(self, rel_path: str) -> bool:
        return self.path(rel_path).is_file()

    def open_image(self, rel_path: str) -> Image.Image:
        with Image.open(self.path(rel_path)) as im:
            im.load()
            return im

    def verify(self, rel_path: str, sha256: str) -> bool:
        path = self.path(rel_path)
        return path.is_file() and sha256_file(path) == sha256

    def delete(self, rel_path: str) -> None:
        self.path(rel_path).unlink(missing_ok=True)
