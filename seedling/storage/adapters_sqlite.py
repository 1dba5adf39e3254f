"""SQLite implementation of the adapter store. A fine-tune job adds a row once its adapter file
is in the file store's "adapters" folder; generation tabs and history filters list them."""

from __future__ import annotations

import time

from sqlalchemy import select

from seedling.storage.adapters_base import AdapterStoreBase
from seedling.storage.adapters_common import AdapterNameTaken, AdapterNotFound, AdapterRecord, NewAdapter
from seedling.storage.db import Database
from seedling.storage.models import Adapter

__all__ = ["AdapterRecord", "SqliteAdapterStore"]


def _record(a: Adapter) -> AdapterRecord:
    return AdapterRecord(
        id=a.id,
        name=a.name,
        kind=a.kind,
        file_path=a.file_path,
        created_at=a.created_at,
        sha256=a.sha256,
        base_model=a.base_model,
        params=dict(a.params or {}),
        data=list(a.data or []),
        metrics=dict(a.metrics or {}),
        job_id=a.job_id,
    )


class SqliteAdapterStore(AdapterStoreBase):
    def __init__(self, db: Database):
        self._db = db

    def list(self) -> list[AdapterRecord]:
        with self._db.read() as s:
            return [_record(a) for a in s.scalars(select(Adapter).order_by(Adapter.name))]

    def get(self, adapter_id: int) -> AdapterRecord:
        with self._db.read() as s:
            row = s.get(Adapter, adapter_id)
            if row is None:
                raise AdapterNotFound(f"adapter #{adapter_id} does not exist (it may have been deleted)")
            return _record(row)

    def by_name(self, name: str) -> AdapterRecord | None:
        with self._db.read() as s:
            row = s.scalar(select(Adapter).where(Adapter.name == name))
            return _record(row) if row is not None else None

    def by_job(self, job_id: int) -> AdapterRecord | None:
        with self._db.read() as s:
            row = s.scalar(select(Adapter).where(Adapter.job_id == job_id))
            return _record(row) if row is not None else None

    def add(self, new: NewAdapter) -> AdapterRecord:
        with self._db.write() as s:
            if s.scalar(select(Adapter.id).where(Adapter.name == new.name)) is not None:
                raise AdapterNameTaken(f"an adapter named {new.name!r} already exists")
            row = Adapter(
                name=new.name,
                kind=new.kind,
                file_path=new.file_path,
                sha256=new.sha256,
                base_model=new.base_model,
                params=new.params,
                data=new.data,
                metrics=new.metrics,
                job_id=new.job_id,
                created_at=time.time(),
            )
            s.add(row)
            s.flush()
            return _record(row)

    def delete(self, adapter_id: int) -> AdapterRecord:
        with self._db.write() as s:
            row = s.get(Adapter, adapter_id)
            if row is None:
                raise AdapterNotFound(f"adapter #{adapter_id} does not exist")
            record = _record(row)
            s.delete(row)
            return record
