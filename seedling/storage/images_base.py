"""Interface of the image store: image rows, lineage edges and history search."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence

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
        """The oldest image not in the trash with these pixels (outputs first), to link a
        re-uploaded picture."""

    @abstractmethod
    def search(self, query: ImageQuery) -> list[ImageRecord]:
        """Newest first (the trash: most recently trashed first)."""

    @abstractmethod
    def parents(self, image_id: int, include_trashed: bool = False) -> list[Relative]: ...

    @abstractmethod
    def children(self, image_id: int, include_trashed: bool = False) -> list[Relative]: ...

    @abstractmethod
    def set_favourite(self, image_id: int, favourite: bool) -> ImageRecord: ...

    @abstractmethod
    def trash(self, image_ids: Collection[int]) -> list[ImageRecord]:
        """Move images to the trash (all or none: ImageNotFound when one is missing); their rows,
        edges and files stay."""

    @abstractmethod
    def restore(self, image_ids: Collection[int]) -> list[ImageRecord]:
        """Take images out of the trash (a trashed image that is restored is as it was)."""

    @abstractmethod
    def purge_trash(self, keep: Collection[int] = ()) -> list[ImageRecord]:
        """Delete the rows of trashed images except `keep` (with their edges and board
        memberships); returns them so the caller can remove their files."""

    @abstractmethod
    def delete(self, image_id: int) -> ImageRecord:
        """Delete the row and its edges; returns it so the caller can remove the file."""

    @abstractmethod
    def all(self) -> list[ImageRecord]:
        """Every image, oldest first (integrity checks, export)."""
