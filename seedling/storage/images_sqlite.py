"""SQLite implementation of the image store, with FTS5 prompt search."""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Sequence

from sqlalchemy import case, delete, select, text
from sqlalchemy.orm import Session

from seedling.storage.db import Database
from seedling.storage.images_base import ImageStoreBase
from seedling.storage.images_common import (
    ImageNotFound,
    ImageQuery,
    ImageRecord,
    NewImage,
    ParentLink,
    Relative,
)
from seedling.storage.models import BoardImage, Image, ImageEdge

_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(user_text: str) -> str | None:
    """An FTS5 MATCH expression from free text: each word a quoted prefix term, all required.
    User text never reaches MATCH as syntax (no operators, columns or unbalanced quotes)."""
    words = _WORD.findall(user_text)
    return " AND ".join(f'"{w}"*' for w in words) if words else None


def _record(row: Image) -> ImageRecord:
    return ImageRecord(
        id=row.id,
        origin=row.origin,  # type: ignore[arg-type]
        file_path=row.file_path,
        sha256=row.sha256,
        pixel_hash=row.pixel_hash,
        file_size=row.file_size,
        width=row.width,
        height=row.height,
        created_at=row.created_at,
        job_id=row.job_id,
        output_index=row.output_index,
        seed=row.seed,
        task=row.task,
        prompt=row.prompt,
        params=dict(row.params or {}),
        timings=dict(row.timings or {}),
        adapter_id=row.adapter_id,
        favourite=bool(row.favourite),
        deleted_at=row.deleted_at,
    )


def insert_images(
    s: Session, images: Sequence[NewImage], parents: Sequence[ParentLink] = (), link_siblings: bool = False
) -> list[ImageRecord]:
    """Insert image rows and their lineage edges in the caller's transaction (the job store
    commits a job's outputs together with its final status through this)."""
    now = time.time()
    rows = [Image(**vars(new), created_at=now) for new in images]
    s.add_all(rows)
    s.flush()
    for row in rows:
        for link in parents:
            s.add(ImageEdge(child_id=row.id, parent_id=link.parent_id, role=link.role, position=link.position))
        if link_siblings:
            for other in rows:
                if other is not row:
                    s.add(ImageEdge(child_id=row.id, parent_id=other.id, role="sibling", position=other.output_index))
    s.flush()
    return [_record(row) for row in rows]


class SqliteImageStore(ImageStoreBase):
    def __init__(self, db: Database):
        self._db = db

    def add(
        self,
        images: Sequence[NewImage],
        parents: Sequence[ParentLink] = (),
        link_siblings: bool = False,
    ) -> list[ImageRecord]:
        with self._db.write() as s:
            return insert_images(s, images, parents, link_siblings)

    def get(self, image_id: int) -> ImageRecord:
        with self._db.read() as s:
            row = s.get(Image, image_id)
            if row is None:
                raise ImageNotFound(f"image {image_id} does not exist")
            return _record(row)

    def for_job(self, job_id: int) -> list[ImageRecord]:
        with self._db.read() as s:
            rows = s.scalars(
                select(Image)
                .where(Image.job_id == job_id, Image.origin == "output")
                .order_by(Image.output_index)
            )
            return [_record(row) for row in rows]

    def find_by_pixels(self, pixel_hash: str) -> ImageRecord | None:
        outputs_first = case((Image.origin == "output", 0), else_=1)
        with self._db.read() as s:
            # a picture in the trash is not reused: its file goes when the trash is emptied
            row = s.scalars(
                select(Image)
                .where(Image.pixel_hash == pixel_hash, Image.deleted_at.is_(None))
                .order_by(outputs_first, Image.id)
                .limit(1)
            ).first()
            return _record(row) if row is not None else None

    def search(self, query: ImageQuery) -> list[ImageRecord]:
        stmt = select(Image)
        if query.text:
            match = fts_query(query.text)
            if match is None:
                return []
            ids = (
                select(text("rowid"))
                .select_from(text("images_fts"))
                .where(text("images_fts MATCH :q").bindparams(q=match))
            )
            stmt = stmt.where(Image.id.in_(ids))
        if query.task:
            stmt = stmt.where(Image.task == query.task)
        if query.origin:
            stmt = stmt.where(Image.origin == query.origin)
        if query.adapter_id is not None:
            stmt = stmt.where(Image.adapter_id == query.adapter_id)
        if query.created_after is not None:
            stmt = stmt.where(Image.created_at >= query.created_after)
        if query.created_before is not None:
            stmt = stmt.where(Image.created_at < query.created_before)
        if query.favourites_only:
            stmt = stmt.where(Image.favourite == 1)
        if query.board_id is not None:
            on_board = select(BoardImage.image_id).where(BoardImage.board_id == query.board_id)
            stmt = stmt.where(Image.id.in_(on_board))
        if query.trash:  # most recently trashed first: the one just deleted is on top
            stmt = stmt.where(Image.deleted_at.is_not(None)).order_by(Image.deleted_at.desc())
        else:
            stmt = stmt.where(Image.deleted_at.is_(None))
        stmt = stmt.order_by(Image.id.desc()).limit(query.limit).offset(query.offset)
        with self._db.read() as s:
            return [_record(row) for row in s.scalars(stmt)]

    def _relatives(self, image_id: int, upward: bool, include_trashed: bool) -> list[Relative]:
        this, other = (
            (ImageEdge.child_id, ImageEdge.parent_id) if upward else (ImageEdge.parent_id, ImageEdge.child_id)
        )
        stmt = (
            select(Image, ImageEdge.role, ImageEdge.position)
            .join(ImageEdge, other == Image.id)
            .where(this == image_id)
            .order_by(ImageEdge.role, ImageEdge.position, Image.id)
        )
        if not include_trashed:
            stmt = stmt.where(Image.deleted_at.is_(None))
        with self._db.read() as s:
            return [Relative(image=_record(img), role=role, position=pos) for img, role, pos in s.execute(stmt)]

    def parents(self, image_id: int, include_trashed: bool = False) -> list[Relative]:
        return self._relatives(image_id, upward=True, include_trashed=include_trashed)

    def children(self, image_id: int, include_trashed: bool = False) -> list[Relative]:
        return self._relatives(image_id, upward=False, include_trashed=include_trashed)

    def _update(self, image_ids: Collection[int], **values) -> list[ImageRecord]:
        """Set `values` on the named images in one transaction; ImageNotFound if any is missing."""
        ids = sorted(set(image_ids))
        with self._db.write() as s:
            rows = list(s.scalars(select(Image).where(Image.id.in_(ids))))
            missing = set(ids) - {row.id for row in rows}
            if missing:
                raise ImageNotFound(f"image {min(missing)} does not exist")
            for row in rows:
                for name, value in values.items():
                    setattr(row, name, value)
            s.flush()
            return [_record(row) for row in rows]

    def set_favourite(self, image_id: int, favourite: bool) -> ImageRecord:
        return self._update([image_id], favourite=int(bool(favourite)))[0]

    def trash(self, image_ids: Collection[int]) -> list[ImageRecord]:
        # Only the deletion time changes: a job's outputs, its status and its lineage edges are
        # untouched, so trashing never races a job committing its results.
        return self._update(image_ids, deleted_at=time.time())

    def restore(self, image_ids: Collection[int]) -> list[ImageRecord]:
        return self._update(image_ids, deleted_at=None)

    def purge_trash(self, keep: Collection[int] = ()) -> list[ImageRecord]:
        with self._db.write() as s:
            rows = list(
                s.scalars(select(Image).where(Image.deleted_at.is_not(None), Image.id.not_in(list(keep))))
            )
            records = [_record(row) for row in rows]
            # edges and board memberships go with the rows (ON DELETE CASCADE): the survivors'
            # lineage never names a removed image
            s.execute(delete(Image).where(Image.id.in_([r.id for r in records])))
            return records

    def delete(self, image_id: int) -> ImageRecord:
        with self._db.write() as s:
            row = s.get(Image, image_id)
            if row is None:
                raise ImageNotFound(f"image {image_id} does not exist")
            record = _record(row)
            s.delete(row)
            return record

    def all(self) -> list[ImageRecord]:
        with self._db.read() as s:
            return [_record(row) for row in s.scalars(select(Image).order_by(Image.id))]
