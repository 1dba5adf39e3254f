"""The history service: input images, search, lineage, delete, parameters from a dropped PNG."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from backend.parameters import RestoredParameters, restore_parameters
from storage.adapters_sqlite import AdapterRecord, SqliteAdapterStore
from storage.files import FileStore, pixel_hash
from storage.images_base import ImageStoreBase
from storage.images_common import ImageQuery, ImageRecord, NewImage, Relative
from storage.pngmeta import read_parameters

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lineage:
    parents: list[Relative]
    children: list[Relative]


class HistoryService:
    def __init__(self, images: ImageStoreBase, files: FileStore, adapters: SqliteAdapterStore):
        self._images = images
        self._files = files
        self._adapters = adapters

    def store_input(self, image: Image.Image, origin: Literal["upload", "mask"] = "upload") -> ImageRecord:
        """An input picture as an image row. A picture already in history (same pixels) is reused,
        so an edit of a history image, sent or re-uploaded, links to it in the lineage."""
        image = image.convert("L" if origin == "mask" else "RGB")
        existing = self._images.find_by_pixels(pixel_hash(image))
        if existing is not None:
            return existing
        stored = self._files.save_png(image, "masks" if origin == "mask" else "uploads")
        new = NewImage(
            origin=origin,
            file_path=stored.rel_path,
            sha256=stored.sha256,
            pixel_hash=stored.pixel_hash,
            file_size=stored.size,
            width=stored.width,
            height=stored.height,
        )
        try:
            return self._images.add([new])[0]
        except Exception:
            self._files.delete(stored.rel_path)
            raise

    def get(self, image_id: int) -> ImageRecord:
        return self._images.get(image_id)

    def path(self, image: ImageRecord) -> Path:
        return self._files.path(image.file_path)

    def open(self, image_id: int) -> Image.Image:
        return self._files.open_image(self._images.get(image_id).file_path)

    def search(self, query: ImageQuery) -> list[ImageRecord]:
        return self._images.search(query)

    def lineage(self, image_id: int) -> Lineage:
        return Lineage(parents=self._images.parents(image_id), children=self._images.children(image_id))

    def delete(self, image_id: int) -> ImageRecord:
        """Delete the row (and its lineage edges), then the file."""
        record = self._images.delete(image_id)
        self._files.delete(record.file_path)
        return record

    def verify(self) -> list[ImageRecord]:
        """Images whose file is missing or whose bytes no longer match their hash."""
        return [rec for rec in self._images.all() if not self._files.verify(rec.file_path, rec.sha256)]

    def adapters(self) -> list[AdapterRecord]:
        return self._adapters.list()

    @staticmethod
    def parameters_from_png(path: str | Path) -> RestoredParameters:
        """The parameters in a PNG's "parameters" text; ValueError when it has none."""
        with Image.open(path) as image:
            image.load()
            text = read_parameters(image)
        if not text:
            raise ValueError("this image carries no generation parameters")
        return restore_parameters(text)
