"""The history service: input images, search, lineage, delete, parameters from a dropped PNG."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from seedling.backend.errors import InvalidJob, NotFound
from seedling.backend.parameters import RestoredParameters, restore_parameters
from seedling.backend.specs import as_row_id
from seedling.pictures import PictureError, open_picture
from seedling.storage.adapters_sqlite import AdapterRecord, SqliteAdapterStore
from seedling.storage.files import FileStore, pixel_hash
from seedling.storage.images_base import ImageStoreBase
from seedling.storage.images_common import ImageNotFound, ImageQuery, ImageRecord, NewImage, Relative
from seedling.storage.pngmeta import read_parameters

log = logging.getLogger(__name__)



def decode_image(
    source: bytes | str | Path, mode: str | None = "RGB", what: str = "the image"
) -> Image.Image:
    """A picture from bytes or a file through the one gate (seedling.pictures), or InvalidJob
    with a sentence: not an image, damaged or cut short, or too many pixels."""
    try:
        return open_picture(source, what, mode)
    except PictureError as err:
        raise InvalidJob(str(err)) from None


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
        new = NewImage.from_stored(stored, origin)
        try:
            return self._images.add([new])[0]
        except Exception:
            self._files.delete(stored.rel_path)
            raise

    def store_upload(
        self, source: bytes | str | Path, origin: Literal["upload", "mask"] = "upload"
    ) -> ImageRecord:
        """An uploaded file (bytes or path) as an image row; InvalidJob when it is no usable picture."""
        what = "the mask" if origin == "mask" else "the uploaded picture"
        return self.store_input(decode_image(source, None, what), origin)

    def get(self, image_id: int) -> ImageRecord:
        """The image row; NotFound (readable) for an id that names no image."""
        try:
            return self._images.get(as_row_id(image_id, "an image id"))
        except ImageNotFound as err:
            raise NotFound(str(err)) from None

    def path(self, image: ImageRecord) -> Path:
        return self._files.path(image.file_path)

    def open(self, image_id: int) -> Image.Image:
        return self._files.open_image(self.get(image_id).file_path)

    def find_picture(self, path: str | Path) -> ImageRecord | None:
        """The history image with the same pixels as the picture at `path` (a result a gallery
        shows, a dropped PNG), or None; InvalidJob when the file is no readable picture."""
        return self._images.find_by_pixels(pixel_hash(decode_image(path, "RGB", "the picture")))

    def search(self, query: ImageQuery) -> list[ImageRecord]:
        return self._images.search(query)

    def lineage(self, image_id: int) -> Lineage:
        image_id = self.get(image_id).id
        return Lineage(parents=self._images.parents(image_id), children=self._images.children(image_id))

    def delete(self, image_id: int) -> ImageRecord:
        """Delete the row (and its lineage edges), then the file. Only a file inside the store
        can go: FileStore.path refuses any other (a damaged row cannot point elsewhere)."""
        try:
            record = self._images.delete(as_row_id(image_id, "an image id"))
        except ImageNotFound as err:
            raise NotFound(str(err)) from None
        try:
            self._files.delete(record.file_path)
        except ValueError:  # a damaged row naming a path outside the store: never follow it
            log.warning(
                "image %d: not deleting %r, it lies outside the file store", record.id, record.file_path
            )
        return record

    def sweep_orphan_outputs(self, older_than_s: float) -> int:
        """Remove result files no row points at (a worker killed between writing a job's files
        and committing them), once older than older_than_s (0 when no other worker can be
        saving now)."""
        referenced = {record.file_path for record in self._images.all()}
        return self._files.sweep_orphans("images", referenced, older_than_s)

    def verify(self) -> list[ImageRecord]:
        """Images whose file is missing or whose bytes no longer match their hash."""
        return [rec for rec in self._images.all() if not self._files.verify(rec.file_path, rec.sha256)]

    def adapters(self) -> list[AdapterRecord]:
        return self._adapters.list()

    @staticmethod
    def parameters_from_png(path: str | Path) -> RestoredParameters:
        """The parameters in a PNG's "parameters" text; ValueError (InvalidJob when the file is no
        readable picture) when it has none."""
        text = read_parameters(decode_image(path, None, "the dropped file"))
        if not text:
            raise InvalidJob("this image carries no generation parameters")
        return restore_parameters(text)
