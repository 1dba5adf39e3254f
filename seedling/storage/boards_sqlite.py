"""SQLite implementation of the board store."""

from __future__ import annotations

import time
from collections.abc import Collection

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seedling.storage.boards_base import BoardStoreBase
from seedling.storage.boards_common import BoardNameTaken, BoardNotFound, BoardRecord
from seedling.storage.db import Database
from seedling.storage.images_common import ImageNotFound
from seedling.storage.models import Board, BoardImage, Image


def _with_counts() -> Select:
    """Boards with the number of their images that are not in the trash."""
    visible = (
        select(func.count())
        .select_from(BoardImage)
        .join(Image, Image.id == BoardImage.image_id)
        .where(BoardImage.board_id == Board.id, Image.deleted_at.is_(None))
        .scalar_subquery()
    )
    return select(Board, visible)


def _record(board: Board, count: int = 0) -> BoardRecord:
    return BoardRecord(id=board.id, name=board.name, created_at=board.created_at, image_count=int(count))


class SqliteBoardStore(BoardStoreBase):
    def __init__(self, db: Database):
        self._db = db

    def create(self, name: str) -> BoardRecord:
        try:
            with self._db.write() as s:
                board = Board(name=name, created_at=time.time())
                s.add(board)
                s.flush()
                return _record(board)
        except IntegrityError:
            raise BoardNameTaken(f"a board named {name!r} already exists") from None

    @staticmethod
    def _board(s: Session, board_id: int) -> Board:
        board = s.get(Board, board_id)
        if board is None:
            raise BoardNotFound(f"board {board_id} does not exist")
        return board

    def get(self, board_id: int) -> BoardRecord:
        with self._db.read() as s:
            row = s.execute(_with_counts().where(Board.id == board_id)).first()
            if row is None:
                raise BoardNotFound(f"board {board_id} does not exist")
            return _record(*row)

    def list(self) -> list[BoardRecord]:
        with self._db.read() as s:
            return [_record(*row) for row in s.execute(_with_counts().order_by(Board.name, Board.id))]

    def add(self, board_id: int, image_ids: Collection[int]) -> int:
        ids = set(image_ids)
        with self._db.write() as s:
            self._board(s, board_id)
            found = set(s.scalars(select(Image.id).where(Image.id.in_(ids))))
            if ids - found:
                raise ImageNotFound(f"image {min(ids - found)} does not exist")
            already = set(
                s.scalars(
                    select(BoardImage.image_id).where(
                        BoardImage.board_id == board_id, BoardImage.image_id.in_(ids)
                    )
                )
            )
            now = time.time()
            s.add_all(BoardImage(board_id=board_id, image_id=i, added_at=now) for i in sorted(ids - already))
            return len(ids - already)

    def remove(self, board_id: int, image_ids: Collection[int]) -> int:
        with self._db.write() as s:
            self._board(s, board_id)
            result = s.execute(
                delete(BoardImage).where(
                    BoardImage.board_id == board_id, BoardImage.image_id.in_(set(image_ids))
                )
            )
            return result.rowcount

    def delete(self, board_id: int) -> BoardRecord:
        with self._db.write() as s:
            board = self._board(s, board_id)
            record = _record(board)
            s.delete(board)  # memberships go with it (ON DELETE CASCADE); the images stay
            return record

    def boards_of(self, image_id: int) -> list[BoardRecord]:
        on_it = select(BoardImage.board_id).where(BoardImage.image_id == image_id)
        with self._db.read() as s:
            rows = s.execute(_with_counts().where(Board.id.in_(on_it)).order_by(Board.name, Board.id))
            return [_record(*row) for row in rows]
