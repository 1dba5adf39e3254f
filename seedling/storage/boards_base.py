"""Interface of the board store: named collections of images (an image may be on several)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection

from seedling.storage.boards_common import BoardRecord


class BoardStoreBase(ABC):
    @abstractmethod
    def create(self, name: str) -> BoardRecord:
        """A new empty board; BoardNameTaken when a board has this name (ignoring case)."""

    @abstractmethod
    def get(self, board_id: int) -> BoardRecord:
        """The board, or raise BoardNotFound."""

    @abstractmethod
    def list(self) -> list[BoardRecord]:
        """Every board, by name."""

    @abstractmethod
    def add(self, board_id: int, image_ids: Collection[int]) -> int:
        """Put images on a board (those already on it stay as they are); returns how many were new.
        BoardNotFound / ImageNotFound when an id names no row."""

    @abstractmethod
    def remove(self, board_id: int, image_ids: Collection[int]) -> int:
        """Take images off a board (the images stay in history); returns how many were on it."""

    @abstractmethod
    def delete(self, board_id: int) -> BoardRecord:
        """Delete a board; its images stay in history."""

    @abstractmethod
    def boards_of(self, image_id: int) -> list[BoardRecord]:
        """The boards an image is on, by name."""
