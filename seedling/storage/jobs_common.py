"""Records of the job store."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobNotFound(LookupError):
    pass


class LeaseLost(RuntimeError):
    """This worker no longer holds the job (its lease expired and the job was requeued, or it was
    cancelled): nothing it computed may be recorded."""


# A running job's lease: the worker renews it every LEASE_S / 6 while it runs; anyone may requeue
# the job once the lease has expired (its worker died or hangs).
LEASE_S = 30.0


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    status: JobStatus
    spec: dict[str, Any]
    created_at: float
    rerun_of: int | None = None
    adapter_id: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress_step: int = 0
    progress_total: int = 0
    error: str | None = None
    cancel_requested: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)  # live training metrics (fine-tune jobs)
    lease_owner: str | None = None  # the worker running it
    lease_expires_at: float | None = None  # requeued by anyone only after this (UNIX seconds)
