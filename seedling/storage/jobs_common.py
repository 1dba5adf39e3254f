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
