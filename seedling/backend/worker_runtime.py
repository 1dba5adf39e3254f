"""What a worker process holds: the stores, the warm model, and the job lifecycle around a runner."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

from seedling.backend.context import JobContext
from seedling.backend.errors import JobCancelled, JobYielded
from seedling.backend.model_host import ModelHost
from seedling.backend.runners import RUNNERS
from seedling.backend.specs import parse_spec
from seedling.storage.adapters_base import AdapterStoreBase
from seedling.storage.files import FileStore, storage_problem
from seedling.storage.images_base import ImageStoreBase
from seedling.storage.jobs_base import JobStoreBase
from seedling.storage.jobs_common import JobStatus

log = logging.getLogger(__name__)

try:  # glibc only; elsewhere there is nothing to trim
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _MALLOC_TRIM = _LIBC.malloc_trim
except (OSError, AttributeError):
    _MALLOC_TRIM = None


def trim_heap() -> None:
    """Hand freed native memory back to the OS after a job: glibc keeps the freed blocks of the
    many differently sized tensors a generation allocates, so without this a long-lived worker's
    RSS creeps up with every new prompt and picture size."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class WorkerRuntime:
    def __init__(
        self,
        jobs: JobStoreBase,
        images: ImageStoreBase,
        files: FileStore,
        model: ModelHost,
        adapters: AdapterStoreBase | None = None,
    ):
        self.jobs = jobs
        self.images = images
        self.files = files
        self.model = model
        self.adapters = adapters
        # Puts a job id on the queue; set once the Huey tasks exist (services.build_services).
        # Without it a long job never yields the worker to others.
        self.enqueue: Callable[[int], None] | None = None

    def warm_up(self) -> None:
        """Load the model before the first job arrives (called when the consumer starts)."""
        try:
            self.model.get()
        except Exception:  # a broken model must not stop the consumer; each job reports it
            log.exception("could not load the model at start-up")

    def run(self, job_id: int) -> JobStatus:
        """Run one job if it is still queued; record its outcome. Never raises for job errors."""
        if not self.jobs.claim(job_id):
            log.info("job %d is not queued any more; skipping", job_id)
            return self.jobs.get(job_id).status
        job = self.jobs.get(job_id)
        ctx = JobContext(
            job_id, self.jobs, self.images, self.files, self.adapters, can_yield=self.enqueue is not None
        )
        timings: dict[str, float] = {"queue_wait": (job.started_at or time.time()) - job.created_at}
        try:
            spec = parse_spec(job.spec)
            timings |= RUNNERS[spec.kind](ctx, spec, self.model)
        except JobYielded:  # checkpointed; back of the queue so the jobs waiting behind it run first
            if self.jobs.requeue(job_id):
                self.enqueue(job_id)  # type: ignore[misc] - can_yield guarantees it is set
            return self.jobs.get(job_id).status
        except JobCancelled:
            return self._finish(job_id, JobStatus.CANCELLED, "cancelled", timings)
        except (ValueError, LookupError, FileNotFoundError) as err:  # bad input, deleted input, no model
            return self._finish(job_id, JobStatus.FAILED, str(err), timings)
        except Exception as err:
            problem = storage_problem(err, what="save the job's results")  # disk full, read-only folder
            if problem is not None:
                log.error("job %d failed: %s", job_id, problem)
                return self._finish(job_id, JobStatus.FAILED, problem, timings)
            log.exception("job %d failed", job_id)
            message = f"internal error ({type(err).__name__}): {err}"
            return self._finish(job_id, JobStatus.FAILED, message, timings)
        timings["submit_to_saved"] = time.time() - job.created_at
        return self._finish(job_id, JobStatus.SUCCEEDED, None, timings)

    def _finish(
        self, job_id: int, status: JobStatus, error: str | None, timings: dict[str, float]
    ) -> JobStatus:
        """Record the outcome. If even that write fails (the history database's disk is full),
        say so in the log: the row stays "running" and the next start requeues it (a job that
        keeps failing this way is failed after max_attempts starts)."""
        trim_heap()
        try:
            self.jobs.finish(job_id, status, error, timings)
        except Exception as err:
            problem = storage_problem(err, what=f"record the outcome of job {job_id}")
            log.exception("job %d: %s", job_id, problem or "could not record its outcome")
            return JobStatus.RUNNING
        return status
