"""Records and errors of the board store."""

from __future__ import annotations

from dataclasses import dataclass


class BoardNotFound(LookupError):
    pass


class BoardNameTaken(ValueError):
    pass


@dataclass(frozen=True)
class BoardRecord:
    id: int
    name: str
    created_at: float
    image_count: int = 0  # images on the board that are not in the trash
