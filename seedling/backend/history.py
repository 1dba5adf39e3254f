"""The history service: input images, search, lineage, delete, parameters from a dropped PNG."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from seedling.backend.errors import InvalidJob, not_found_as_readable
from seedling.backend.parameters import RestoredParameters, restore_parameters
from seedling.backend.specs import as_row_id, check_text
from seedling.pictures import PictureError, open_picture
from seedling.storage.adapters_sqlite import AdapterRecord, SqliteAdapterStore
from seedling.storage.boards_base import BoardStoreBase
from seedling.storage.boards_common import BoardNameTaken, BoardNotFound, BoardRecord
from seedling.storage.files import FileStore, pixel_hash
from seedling.storage.images_base import ImageStoreBase
from seedling.storage.images_common import ImageNotFound, ImageQuery, ImageRecord, NewImage, Relative
from seedling.storage.pngmeta import read_parameters

log = logging.getLogger(__name__)

MAX_BOARD_NAME = 80


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
    def __init__(
        self,
        images: ImageStoreBase,
        files: FileStore,
        adapters: SqliteAdapterStore,
        boards: BoardStoreBase,
        inputs_in_use: Callable[[], set[int]] = set,
    ):
        self._images = images
        self._files = files
        self._adapters = adapters
        self._boards = boards
        self._inputs_in_use = inputs_in_use  # images queued or running jobs still need

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
        with not_found_as_readable(ImageNotFound):
            return self._images.get(as_row_id(image_id, "an image id"))

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
        """An image's parents and children, without those in the trash."""
        image_id = self.get(image_id).id
        return Lineage(parents=self._images.parents(image_id), children=self._images.children(image_id))

    def delete(self, image_id: int) -> ImageRecord:
        """Delete the row (and its lineage edges) now, then the file; no undo (see `trash`)."""
        with not_found_as_readable(ImageNotFound):
            record = self._images.delete(as_row_id(image_id, "an image id"))
        self._delete_file(record)
        return record

    def _delete_file(self, record: ImageRecord) -> None:
        """Only a file inside the store can go: FileStore.path refuses any other (a damaged row
        cannot point elsewhere)."""
        try:
            self._files.delete(record.file_path)
        except ValueError:  # a damaged row naming a path outside the store: never follow it
            log.warning(
                "image %d: not deleting %r, it lies outside the file store", record.id, record.file_path
            )

    def _image_ids(self, image_ids) -> list[int]:
        ids = image_ids if isinstance(image_ids, list | tuple | set) else [image_ids]
        return [as_row_id(i, "an image id") for i in ids]

    def trash(self, image_ids) -> list[ImageRecord]:
        """Move one image (an id) or several (a list) to the trash: gone from history, search and
        lineage, the file kept until the trash is emptied; `restore` undoes it."""
        with not_found_as_readable(ImageNotFound):
            return self._images.trash(self._image_ids(image_ids))

    def restore(self, image_ids) -> list[ImageRecord]:
        """Take images out of the trash, back where they were (favourite, boards, lineage)."""
        with not_found_as_readable(ImageNotFound):
            return self._images.restore(self._image_ids(image_ids))

    def trashed(self, limit: int = 200) -> list[ImageRecord]:
        """What is in the trash (every origin), most recently trashed first."""
        return self._images.search(ImageQuery(origin=None, trash=True, limit=limit))

    def empty_trash(self) -> tuple[list[ImageRecord], list[ImageRecord]]:
        """Delete trashed images for good: rows first (with their edges and board places), then
        files, so a crash between leaves an orphan file (`sweep_orphan_outputs`), never a row
        without its file. Returns (removed, kept): an input of a queued or running job stays in
        the trash until that job is done."""
        keep = self._inputs_in_use()
        removed = self._images.purge_trash(keep)
        for record in removed:
            self._delete_file(record)
        kept = [im for im in self.trashed(limit=100_000) if im.id in keep]
        return removed, kept

    def set_favourite(self, image_id, favourite: bool) -> ImageRecord:
        with not_found_as_readable(ImageNotFound):
            return self._images.set_favourite(as_row_id(image_id, "an image id"), favourite)

    def boards(self) -> list[BoardRecord]:
        return self._boards.list()

    def board(self, board_id) -> BoardRecord:
        with not_found_as_readable(BoardNotFound):
            return self._boards.get(as_row_id(board_id, "a board id"))

    def create_board(self, name: str | None) -> BoardRecord:
        """A new board; InvalidJob (a sentence) for an empty, overlong or taken name."""
        if name is not None and not isinstance(name, str):
            raise InvalidJob(f"the board name must be text, not {type(name).__name__}")
        try:
            name = " ".join((check_text(name, "the board name") or "").split())
        except ValueError as err:
            raise InvalidJob(str(err)) from None
        if not name:
            raise InvalidJob("give the board a name")
        if len(name) > MAX_BOARD_NAME:
            raise InvalidJob(f"a board name may be at most {MAX_BOARD_NAME} characters long")
        try:
            return self._boards.create(name)
        except BoardNameTaken as err:
            raise InvalidJob(str(err)) from None

    def add_to_board(self, board_id, image_ids) -> int:
        """Put images on a board; how many were not on it yet."""
        with not_found_as_readable(BoardNotFound, ImageNotFound):
            return self._boards.add(as_row_id(board_id, "a board id"), self._image_ids(image_ids))

    def remove_from_board(self, board_id, image_ids) -> int:
        with not_found_as_readable(BoardNotFound):
            return self._boards.remove(as_row_id(board_id, "a board id"), self._image_ids(image_ids))

    def delete_board(self, board_id) -> BoardRecord:
        """Delete a board; its images stay in history."""
        with not_found_as_readable(BoardNotFound):
            return self._boards.delete(as_row_id(board_id, "a board id"))

    def boards_of(self, image_id) -> list[BoardRecord]:
        return self._boards.boards_of(as_row_id(image_id, "an image id"))

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
