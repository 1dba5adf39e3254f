"""SQLite implementation of the image store, with FTS5 prompt search."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from sqlalchemy import case, select, text
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
from seedling.storage.models import Image, ImageEdge

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
            row = s.scalars(
                select(Image).where(Image.pixel_hash == pixel_hash).order_by(outputs_first, Image.id).limit(1)
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
        stmt = stmt.order_by(Image.id.desc()).limit(query.limit).offset(query.offset)
        with self._db.read() as s:
            return [_record(row) for row in s.scalars(stmt)]

    def _relatives(self, s: Session, image_id: int, upward: bool) -> list[Relative]:
        this, other = (
            (ImageEdge.child_id, ImageEdge.parent_id) if upward else (ImageEdge.parent_id, ImageEdge.child_id)
        )
        rows = s.execute(
            select(Image, ImageEdge.role, ImageEdge.position)
            .join(ImageEdge, other == Image.id)
            .where(this == image_id)
            .order_by(ImageEdge.role, ImageEdge.position, Image.id)
        )
        return [Relative(image=_record(img), role=role, position=pos) for img, role, pos in rows]

    def parents(self, image_id: int) -> list[Relative]:
        with self._db.read() as s:
            return self._relatives(s, image_id, upward=True)

    def children(self, image_id: int) -> list[Relative]:
        with self._db.read() as s:
            return self._relatives(s, image_id, upward=False)

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
