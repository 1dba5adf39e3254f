"""The file store: PNGs written atomically under the data folder, named by random ids.

A file is encoded in memory, hashed, written to a temporary name in its final folder, fsynced,
renamed into place and the folder fsynced; only then may a row point at it. Paths come from
uuid4 and a fixed folder name, never from user text, and every path read back is checked to lie
inside the store.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from storage.pngmeta import png_info

Folder = Literal["images", "uploads", "masks", "adapters"]
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def save_png(self, image: Image.Image, folder: Folder, parameters: str | None = None) -> StoredFile:
        if folder not in _FOLDERS:
            raise ValueError(f"unknown folder {folder!r}")
        buf = io.BytesIO()
        image.save(buf, format="PNG", pnginfo=png_info(parameters) if parameters is not None else None)
        data = buf.getvalue()
        name = uuid.uuid4().hex
        rel_path = f"{folder}/{name[:2]}/{name}.png"
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
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(final.parent)
        return final

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
