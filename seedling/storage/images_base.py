"""Interface of the image store: image rows, lineage edges and history search."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from seedling.storage.images_common import ImageQuery, ImageRecord, NewImage, ParentLink, Relative


class ImageStoreBase(ABC):
    @abstractmethod
    def add(
        self,
        images: Sequence[NewImage],
        parents: Sequence[ParentLink] = (),
        link_siblings: bool = False,
    ) -> list[ImageRecord]:
        """Insert images (their files must already exist) in one transaction; every new image gets
        every link in `parents`; with link_siblings each also gets the others as "sibling"."""

    @abstractmethod
    def get(self, image_id: int) -> ImageRecord:
        """The image, or raise ImageNotFound."""

    @abstractmethod
    def for_job(self, job_id: int) -> list[ImageRecord]:
        """A job's outputs in output order."""

    @abstractmethod
    def find_by_pixels(self, pixel_hash: str) -> ImageRecord | None:
        """The oldest image with these pixels (outputs first), to link a re-uploaded picture."""

    @abstractmethod
    def search(self, query: ImageQuery) -> list[ImageRecord]:
        """Newest first."""

    @abstractmethod
    def parents(self, image_id: int) -> list[Relative]: ...

    @abstractmethod
    def children(self, image_id: int) -> list[Relative]: ...

    @abstractmethod
    def delete(self, image_id: int) -> ImageRecord:
        """Delete the row and its edges; returns it so the caller can remove the file."""

    @abstractmethod
    def all(self) -> list[ImageRecord]:
        """Every image, oldest first (integrity checks, export)."""
