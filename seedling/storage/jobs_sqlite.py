"""SQLite implementation of the job store."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from seedling.storage.db import Database
from seedling.storage.images_common import ImageRecord, NewImage, ParentLink
from seedling.storage.images_sqlite import insert_images
from seedling.storage.jobs_base import JobStoreBase
from seedling.storage.jobs_common import (
    ACTIVE_STATUSES,
    LEASE_S,
    JobNotFound,
    JobRecord,
    JobStatus,
    LeaseLost,
)
from seedling.storage.models import Image, Job


def _record(row: Job) -> JobRecord:
    return JobRecord(
        id=row.id,
        kind=row.kind,
        status=JobStatus(row.status),
        spec=dict(row.spec),
        created_at=row.created_at,
        rerun_of=row.rerun_of,
        adapter_id=row.adapter_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        progress_step=row.progress_step,
        progress_total=row.progress_total,
        error=row.error,
        cancel_requested=bool(row.cancel_requested),
        timings=dict(row.timings or {}),
        attempts=row.attempts,
        metrics=dict(row.metrics or {}),
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
    )


_QUEUE_ORDER = (func.coalesce(Job.queued_at, 0.0), Job.id)


class SqliteJobStore(JobStoreBase):
    def __init__(self, db: Database):
        self._db = db

    def create(
        self, kind: str, spec: dict[str, Any], rerun_of: int | None = None, adapter_id: int | None = None
    ) -> JobRecord:
        now = time.time()
        with self._db.write() as s:
            row = Job(
                kind=kind,
                status=JobStatus.QUEUED.value,
                spec=spec,
                rerun_of=rerun_of,
                adapter_id=adapter_id,
                created_at=now,
                queued_at=now,
                metrics={},
                progress_step=0,
                progress_total=0,
                cancel_requested=0,
                timings={},
                attempts=0,
            )
            s.add(row)
            s.flush()
            return _record(row)

    def get(self, job_id: int) -> JobRecord:
        with self._db.read() as s:
            row = s.get(Job, job_id)
            if row is None:
                raise JobNotFound(f"job {job_id} does not exist")
            return _record(row)

    def claim(self, job_id: int, owner: str | None = None, lease_s: float = LEASE_S) -> bool:
        with self._db.write() as s:
            return self._claim(s, job_id, owner, lease_s)

    def claim_next(self, owner: str, lease_s: float = LEASE_S) -> int | None:
        with self._db.write() as s:
            queued = s.scalars(
                select(Job.id).where(Job.status == JobStatus.QUEUED.value).order_by(*_QUEUE_ORDER)
            ).all()
            for job_id in queued:  # the first that is not already done (outputs found: finished)
                if self._claim(s, job_id, owner, lease_s):
                    return job_id
            return None

    @staticmethod
    def _claim(s: Session, job_id: int, owner: str | None, lease_s: float) -> bool:
        has_outputs = s.scalar(
            select(func.count()).select_from(Image).where(Image.job_id == job_id, Image.origin == "output")
        )
        now = time.time()
        if has_outputs:  # ran to the end before a crash: it is done, never run twice
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_([st.value for st in ACTIVE_STATUSES]))
                .values(status=JobStatus.SUCCEEDED.value, finished_at=now, error=None, lease_owner=None)
            )
            return False
        result = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
            .values(
                status=JobStatus.RUNNING.value,
                started_at=now,
                attempts=Job.attempts + 1,
                progress_step=0,
                error=None,
                lease_owner=owner,
                lease_expires_at=now + lease_s,
            )
        )
        return result.rowcount == 1

    def renew_lease(self, job_id: int, owner: str, lease_s: float = LEASE_S) -> bool:
        with self._db.write() as s:
            result = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, Job.lease_owner == owner)
                .values(lease_expires_at=time.time() + lease_s)
            )
            return result.rowcount == 1

    def complete(
        self,
        job_id: int,
        outputs: Sequence[NewImage],
        parents: Sequence[ParentLink],
        link_siblings: bool,
        owner: str | None,
        timings: dict[str, float] | None = None,
    ) -> list[ImageRecord]:
        with self._db.write() as s:
            values: dict[str, Any] = {
                "status": JobStatus.SUCCEEDED.value, "finished_at": time.time(), "error": None,
                "lease_owner": None,
            }
            if timings is not None:
                values["timings"] = timings
            done = s.execute(update(Job).where(*self._held(job_id, owner)).values(**values))
            if done.rowcount != 1:
                raise LeaseLost(f"job {job_id} is not running under this worker any more; its results are dropped")
            return insert_images(s, outputs, parents, link_siblings)

    @staticmethod
    def _held(job_id: int, owner: str | None) -> tuple:
        """WHERE clauses: the job runs, under `owner` when one is given."""
        held = (Job.id == job_id, Job.status == JobStatus.RUNNING.value)
        return (*held, Job.lease_owner == owner) if owner is not None else held

    def set_progress(self, job_id: int, step: int, total: int, preview_png: bytes | None) -> None:
        values: dict[str, Any] = {"progress_step": step, "progress_total": total}
        if preview_png is not None:
            values["preview_png"] = preview_png
        with self._db.write() as s:
            s.execute(update(Job).where(Job.id == job_id).values(**values))

    def finish(
        self,
        job_id: int,
        status: JobStatus,
        error: str | None = None,
        timings: dict[str, float] | None = None,
        owner: str | None = None,
    ) -> bool:
        if not status.finished:
            raise ValueError(f"{status} is not a finished status")
        values: dict[str, Any] = {"status": status.value, "finished_at": time.time(), "error": error,
                                  "lease_owner": None}
        if timings is not None:
            values["timings"] = timings
        with self._db.write() as s:
            if owner is None:
                return s.execute(update(Job).where(Job.id == job_id).values(**values)).rowcount == 1
            if s.execute(update(Job).where(*self._held(job_id, owner)).values(**values)).rowcount == 1:
                return True
            if status == JobStatus.SUCCEEDED and timings is not None:  # complete() already finished it
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == JobStatus.SUCCEEDED.value)
                    .values(timings=timings)
                )
            return False

    def request_cancel(self, job_id: int) -> JobStatus:
        with self._db.write() as s:
            row = s.get(Job, job_id)
            if row is None:
                raise JobNotFound(f"job {job_id} does not exist")
            if row.status == JobStatus.QUEUED.value:
                row.status = JobStatus.CANCELLED.value
                row.finished_at = time.time()
                row.error = "cancelled before it started"
            elif row.status == JobStatus.RUNNING.value:
                row.cancel_requested = 1
            return JobStatus(row.status)

    def is_cancel_requested(self, job_id: int) -> bool:
        with self._db.read() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def get_preview(self, job_id: int) -> bytes | None:
        with self._db.read() as s:
            return s.scalar(select(Job.preview_png).where(Job.id == job_id))

    def get_many(self, job_ids: Iterable[int]) -> dict[int, JobRecord]:
        """The rows of the jobs that exist among `job_ids`, in one read."""
        ids = list(job_ids)
        if not ids:
            return {}
        with self._db.read() as s:
            return {row.id: _record(row) for row in s.scalars(select(Job).where(Job.id.in_(ids)))}

    def queue_positions(self) -> dict[int, int]:
        """Every queued job's place in line (1 = next), in one read. Queue order is (queued_at, id):
        a requeued fine-tune job goes behind later jobs."""
        with self._db.read() as s:
            queued = s.scalars(select(Job.id).where(Job.status == JobStatus.QUEUED.value).order_by(*_QUEUE_ORDER))
            return {job_id: place for place, job_id in enumerate(queued, start=1)}

    def list(self, statuses: Iterable[JobStatus] | None = None, limit: int = 100) -> list[JobRecord]:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if statuses is not None:
            query = query.where(Job.status.in_([st.value for st in statuses]))
        with self._db.read() as s:
            return [_record(row) for row in s.scalars(query)]

    def count_active(self) -> int:
        with self._db.read() as s:
            return s.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status.in_([st.value for st in ACTIVE_STATUSES]))
            )

    def queue_position(self, job_id: int) -> int | None:
        return self.queue_positions().get(job_id)

    def requeue(self, job_id: int) -> bool:
        with self._db.write() as s:
            result = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
                .values(status=JobStatus.QUEUED.value, queued_at=time.time(), attempts=0, lease_owner=None)
            )
            return result.rowcount == 1

    def count_queued(self, exclude_kind: str | None = None) -> int:
        query = select(func.count()).select_from(Job).where(Job.status == JobStatus.QUEUED.value)
        if exclude_kind is not None:
            query = query.where(Job.kind != exclude_kind)
        with self._db.read() as s:
            return s.scalar(query)

    def set_metrics(self, job_id: int, metrics: dict[str, Any]) -> None:
        with self._db.write() as s:
            s.execute(update(Job).where(Job.id == job_id).values(metrics=metrics))

    def reset_interrupted(
        self, max_attempts: int, owners: Iterable[str] | None = None, now: float | None = None
    ) -> tuple[list[int], list[int]]:
        requeued: list[int] = []
        failed: list[int] = []
        now = time.time() if now is None else now
        dead = None if owners is None else set(owners)
        with self._db.write() as s:
            rows = s.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value).order_by(Job.id))
            for row in rows:
                expired = row.lease_expires_at is None or row.lease_expires_at < now
                if dead is not None and not expired and row.lease_owner not in dead:
                    continue  # a live worker elsewhere runs it
                row.lease_owner = None
                if row.cancel_requested:
                    row.status = JobStatus.CANCELLED.value
                    row.finished_at = now
                    continue
                if row.attempts >= max_attempts:
                    row.status = JobStatus.FAILED.value
                    row.finished_at = now
                    row.error = f"the worker stopped while running this job {row.attempts} times; gave up"
                    failed.append(row.id)
                    continue
                row.status = JobStatus.QUEUED.value  # queued_at unchanged: it keeps its place in line
                row.progress_step = 0
                requeued.append(row.id)
        return requeued, failed
