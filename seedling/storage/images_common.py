"""Records and queries of the image store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Origin = Literal["output", "upload", "mask"]
# How a parent went into a child. "sibling" links the panels of one storyboard.
Role = Literal["source", "mask", "reference", "character", "style", "control", "glyph", "sibling"]


class ImageNotFound(LookupError):
    pass


@dataclass(frozen=True)
class ImageRecord:
    id: int
    origin: Origin
    file_path: str  # relative to the file store root
    sha256: str
    pixel_hash: str
    file_size: int
    width: int
    height: int
    created_at: float
    job_id: int | None = None
    output_index: int = 0
    seed: int | None = None
    task: str | None = None
    prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    adapter_id: int | None = None
    favourite: bool = False
    deleted_at: float | None = None  # set while the image is in the trash

    @property
    def trashed(self) -> bool:
        return self.deleted_at is not None


@dataclass(frozen=True)
class NewImage:
    """An image whose file is already in the store, ready to become a row."""

    origin: Origin
    file_path: str
    sha256: str
    pixel_hash: str
    file_size: int
    width: int
    height: int
    job_id: int | None = None
    output_index: int = 0
    seed: int | None = None
    task: str | None = None
    prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    adapter_id: int | None = None

    @classmethod
    def from_stored(cls, stored: Any, origin: Origin, **fields: Any) -> NewImage:
        """The row for a file `FileStore` just wrote (a `StoredFile`), plus the other fields."""
        return cls(origin=origin, file_path=stored.rel_path, sha256=stored.sha256, pixel_hash=stored.pixel_hash,
                   file_size=stored.size, width=stored.width, height=stored.height, **fields)


@dataclass(frozen=True)
class ParentLink:
    parent_id: int
    role: Role
    position: int = 0


@dataclass(frozen=True)
class Relative:
    """An image on the other end of a lineage edge."""

    image: ImageRecord
    role: Role
    position: int


@dataclass(frozen=True)
class ImageQuery:
    """History search: every field narrows the result; None means "any"."""

    text: str | None = None  # full-text over prompts (FTS5); words match as prefixes, all must match
    task: str | None = None
    created_after: float | None = None  # UNIX seconds, inclusive
    created_before: float | None = None  # UNIX seconds, exclusive
    adapter_id: int | None = None
    origin: Origin | None = "output"
    favourites_only: bool = False
    board_id: int | None = None  # only images on this board
    trash: bool = False  # False: images not in the trash (history); True: only those in it
    limit: int = 200
    offset: int = 0
