"""Interface of the job store: job rows, their status, progress, previews and cancel flags."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from seedling.storage.jobs_common import JobRecord, JobStatus


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
    def claim(self, job_id: int) -> bool:
        """QUEUED -> RUNNING; False when the job is not queued (already claimed, cancelled, gone)."""

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
    ) -> None:
        """Move a job to a finished status."""

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
    def reset_interrupted(self, max_attempts: int) -> tuple[list[int], list[int]]:
        """After a crash: RUNNING jobs go back to QUEUED (or FAILED once they used max_attempts).
        Returns (ids to enqueue again, oldest first; ids failed)."""
