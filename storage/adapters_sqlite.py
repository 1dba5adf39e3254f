"""Adapters (fine-tuned weights) as the generation tabs and history filters see them.

Fine-tuning itself is a later issue; it will add rows here from its job and files under the
file store's "adapters" folder. Until then the table is empty and this store only lists it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from storage.db import Database
from storage.models import Adapter


@dataclass(frozen=True)
class AdapterRecord:
    id: int
    name: str
    kind: str
    file_path: str | None
    created_at: float


class SqliteAdapterStore:
    def __init__(self, db: Database):
        self._db = db

    def list(self) -> list[AdapterRecord]:
        with self._db.read() as s:
            return [
                AdapterRecord(
                    id=a.id, name=a.name, kind=a.kind, file_path=a.file_path, created_at=a.created_at
                )
                for a in s.scalars(select(Adapter).order_by(Adapter.name))
            ]
