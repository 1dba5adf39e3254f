"""Interface of the job store: job rows, their status, progress, previews and cancel flags."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

from seedling.storage.images_common import ImageRecord, NewImage, ParentLink
from seedling.storage.jobs_common import LEASE_S, JobRecord, JobStatus


class JobStoreBase(ABC):
    @abstractmethod
    def create(
        self, kind: str, spec: dict[str, Any], rerun_of: int | None = None, adapter_id: int | None = None
    ) -> JobRecord:
        """Store a new job as QUEUED."""

    @abstractmethod
    def get(self, job_id: int) -> JobRecord:
        """The job, or raise JobNotFound."""

    @abstractmethod
    def claim(self, job_id: int, owner: str | None = None, lease_s: float = LEASE_S) -> bool:
        """QUEUED -> RUNNING under `owner`'s lease; False when the job is not queued (already
        claimed, cancelled, gone) or already has its outputs (then it is marked SUCCEEDED)."""

    @abstractmethod
    def claim_next(self, owner: str, lease_s: float = LEASE_S) -> int | None:
        """Claim the first job in queue order ((queued_at, id)); None when none is queued."""

    @abstractmethod
    def renew_lease(self, job_id: int, owner: str, lease_s: float = LEASE_S) -> bool:
        """Extend `owner`'s lease on a running job; False when it holds the job no more."""

    @abstractmethod
    def complete(
        self,
        job_id: int,
        outputs: Sequence[NewImage],
        parents: Sequence[ParentLink],
        link_siblings: bool,
        owner: str | None,
        timings: dict[str, float] | None = None,
    ) -> list[ImageRecord]:
        """In one transaction: add the job's output rows and edges and mark it SUCCEEDED. Raises
        LeaseLost (nothing written) when the job is not running under `owner` any more."""

    @abstractmethod
    def set_progress(self, job_id: int, step: int, total: int, preview_png: bytes | None) -> None:
        """Record per-step progress; a None preview keeps the last one."""

    @abstractmethod
    def finish(
        self,
        job_id: int,
        status: JobStatus,
        error: str | None = None,
        timings: dict[str, float] | None = None,
        owner: str | None = None,
    ) -> bool:
        """Move a job to a finished status; with `owner`, only while that worker runs it (a
        SUCCEEDED job then only gets its timings). False when nothing was changed."""

    @abstractmethod
    def request_cancel(self, job_id: int) -> JobStatus:
        """Cancel a queued job at once, flag a running one; returns the status after the call."""

    @abstractmethod
    def is_cancel_requested(self, job_id: int) -> bool: ...

    @abstractmethod
    def get_preview(self, job_id: int) -> bytes | None: ...

    @abstractmethod
    def list(self, statuses: Iterable[JobStatus] | None = None, limit: int = 100) -> list[JobRecord]:
        """Newest first."""

    @abstractmethod
    def count_active(self) -> int:
        """Jobs queued or running."""

    @abstractmethod
    def queue_position(self, job_id: int) -> int | None:
        """1 for the next queued job to run; None when the job is not queued."""

    @abstractmethod
    def requeue(self, job_id: int) -> bool:
        """RUNNING -> QUEUED at the back of the queue, attempts reset: a job that stopped cleanly
        to let others run (a fine-tune chunk). False when the job was not running."""

    @abstractmethod
    def count_queued(self, exclude_kind: str | None = None) -> int:
        """Jobs waiting to run (not counting those of `exclude_kind`)."""

    @abstractmethod
    def set_metrics(self, job_id: int, metrics: dict[str, Any]) -> None:
        """Replace a job's live metrics (a fine-tune job's loss curve)."""

    @abstractmethod
    def reset_interrupted(
        self, max_attempts: int, owners: Iterable[str] | None = None, now: float | None = None
    ) -> tuple[list[int], list[int]]:
        """RUNNING jobs whose lease expired, or held by one of `owners` (workers known dead; None:
        every running job, for a start with no worker alive), go back to QUEUED at their old place
        in line (or FAILED once they used max_attempts). Returns (ids requeued, oldest first; ids
        failed)."""
