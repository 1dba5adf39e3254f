"""What a worker process holds: the stores, the warm model, and the job lifecycle around a runner."""

from __future__ import annotations

import logging
import time

from backend.context import JobContext
from backend.errors import JobCancelled
from backend.model_host import ModelHost
from backend.runners import RUNNERS
from backend.specs import parse_spec
from storage.files import FileStore
from storage.images_base import ImageStoreBase
from storage.jobs_base import JobStoreBase
from storage.jobs_common import JobStatus

log = logging.getLogger(__name__)


class WorkerRuntime:
    def __init__(self, jobs: JobStoreBase, images: ImageStoreBase, files: FileStore, model: ModelHost):
        self.jobs = jobs
        self.images = images
        self.files = files
        self.model = model

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
        ctx = JobContext(job_id, self.jobs, self.images, self.files)
        timings: dict[str, float] = {"queue_wait": (job.started_at or time.time()) - job.created_at}
        try:
            spec = parse_spec(job.spec)
            timings |= RUNNERS[spec.kind](ctx, spec, self.model)
        except JobCancelled:
            self.jobs.finish(job_id, JobStatus.CANCELLED, "cancelled", timings)
            return JobStatus.CANCELLED
        except (ValueError, LookupError, FileNotFoundError) as err:  # bad input, deleted input, no model
            self.jobs.finish(job_id, JobStatus.FAILED, str(err), timings)
            return JobStatus.FAILED
        except Exception as err:
            log.exception("job %d failed", job_id)
            self.jobs.finish(
                job_id, JobStatus.FAILED, f"internal error ({type(err).__name__}): {err}", timings
            )
            return JobStatus.FAILED
        timings["submit_to_saved"] = time.time() - job.created_at
        self.jobs.finish(job_id, JobStatus.SUCCEEDED, None, timings)
        return JobStatus.SUCCEEDED
