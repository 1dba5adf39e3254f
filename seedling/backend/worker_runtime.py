"""What a worker process holds: the stores, the warm model, and the job lifecycle around a runner."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from seedling.backend import worker_status
from seedling.backend.context import JobContext
from seedling.backend.errors import JobCancelled, JobYielded
from seedling.backend.faults import crash_point
from seedling.backend.model_host import ModelHost
from seedling.backend.runners import RUNNERS
from seedling.backend.specs import parse_spec
from seedling.storage.adapters_base import AdapterStoreBase
from seedling.storage.files import FileStore, storage_problem
from seedling.storage.images_base import ImageStoreBase
from seedling.storage.jobs_base import JobStoreBase
from seedling.storage.jobs_common import LEASE_S, JobStatus, LeaseLost

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


def new_worker_id() -> str:
    """host:pid:random - unique across machines sharing a Redis queue and across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class WorkerRuntime:
    def __init__(
        self,
        jobs: JobStoreBase,
        images: ImageStoreBase,
        files: FileStore,
        model: ModelHost,
        adapters: AdapterStoreBase | None = None,
        owner: str | None = None,
        lease_s: float = LEASE_S,
    ):
        self.jobs = jobs
        self.images = images
        self.files = files
        self.model = model
        self.adapters = adapters
        self.owner = owner or new_worker_id()
        self.lease_s = lease_s
        # Puts a wake-up on the queue; set once the Huey tasks exist (services.build_services).
        # Without it a long job never yields the worker to others.
        self.enqueue: Callable[[int], None] | None = None
        self.current_job: int | None = None
        self._lease_lost = threading.Event()
        self.max_attempts = 3

    def warm_up(self) -> None:
        """Load the model before the first job arrives (called when the consumer starts), saying
        what it does in the data folder's worker status (the app shows it to waiting jobs)."""
        data_dir = self.files.root.parent

        def report(phase: str) -> None:
            worker_status.report(data_dir, self.owner, phase)

        try:
            self.model.get(report)
        except Exception:  # a broken model must not stop the consumer; each job reports it
            log.exception("could not load the model at start-up")
        report(worker_status.READY)

    def run_next(self) -> int | None:
        """Claim and run the first job in queue order (a queue message is a wake-up: which job
        runs is the database's queue order, so a requeued job keeps its place in line and a
        duplicate message finds nothing to do). Returns the id of the job run, if any."""
        job_id = self.jobs.claim_next(self.owner, self.lease_s)
        if job_id is None:
            return None
        self._execute(job_id)
        return job_id

    def run(self, job_id: int) -> JobStatus:
        """Run one given job if it is still queued; record its outcome. Never raises for job errors."""
        if not self.jobs.claim(job_id, self.owner, self.lease_s):
            log.info("job %d is not queued any more; skipping", job_id)
            return self.jobs.get(job_id).status
        return self._execute(job_id)

    def _execute(self, job_id: int) -> JobStatus:
        crash_point("claimed", job_id)
        self.current_job = job_id
        self._lease_lost.clear()
        try:
            return self._execute_claimed(job_id)
        finally:
            self.current_job = None

    def _execute_claimed(self, job_id: int) -> JobStatus:
        job = self.jobs.get(job_id)
        # an earlier run died: files it wrote but never recorded go now (the job has no outputs)
        if job.attempts > 1 and (removed := self.files.remove_tagged("images", f"job{job_id}")):
            log.info("job %d: removed %d result files of its interrupted run", job_id, removed)
        ctx = JobContext(
            job_id, self.jobs, self.images, self.files, self.adapters,
            can_yield=self.enqueue is not None, owner=self.owner, lease_lost=self._lease_lost.is_set,
        )
        timings: dict[str, float] = {"queue_wait": (job.started_at or time.time()) - job.created_at}
        try:
            spec = parse_spec(job.spec)
            timings |= RUNNERS[spec.kind](ctx, spec, self.model)
        except JobYielded:  # checkpointed; back of the queue so the jobs waiting behind it run first
            if self.jobs.requeue(job_id):
                self.enqueue(job_id)  # type: ignore[misc] - can_yield guarantees it is set
            return self.jobs.get(job_id).status
        except LeaseLost as err:
            log.warning("job %d: %s", job_id, err)
            return self.jobs.get(job_id).status
        except JobCancelled:
            if self._lease_lost.is_set():
                log.warning("job %d: the lease was lost; another worker runs it now", job_id)
                return self.jobs.get(job_id).status
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
        crash_point("outputs_committed", job_id)
        timings["submit_to_saved"] = time.time() - job.created_at
        status = self._finish(job_id, JobStatus.SUCCEEDED, None, timings)
        crash_point("finished", job_id)
        return status

    def _finish(
        self, job_id: int, status: JobStatus, error: str | None, timings: dict[str, float]
    ) -> JobStatus:
        """Record the outcome (under this worker's lease). If even that write fails (the history
        database's disk is full), say so in the log: the row stays "running" and is requeued when
        its lease expires (a job that keeps failing this way is failed after max_attempts starts)."""
        trim_heap()
        try:
            self.jobs.finish(job_id, status, error, timings, owner=self.owner)
        except Exception as err:
            problem = storage_problem(err, what=f"record the outcome of job {job_id}")
            log.exception("job %d: %s", job_id, problem or "could not record its outcome")
            return JobStatus.RUNNING
        return self.jobs.get(job_id).status

    # -- leases ----------------------------------------------------------------------------------
    def heartbeat(self) -> list[int]:
        """Renew the running job's lease; requeue jobs whose lease expired (their worker died or
        hangs) and wake the queue for them. Returns the ids requeued."""
        job_id = self.current_job
        lost = job_id is not None and not self.jobs.renew_lease(job_id, self.owner, self.lease_s)
        if lost and self.current_job == job_id:
            self._lease_lost.set()  # the job stops at its next step; nothing it made is saved
        requeued, _ = self.jobs.reset_interrupted(self.max_attempts, owners=())
        for rid in requeued:
            if self.enqueue is not None:
                self.enqueue(rid)
        if requeued:
            log.warning("requeued jobs whose worker stopped renewing its lease: %s", requeued)
        return requeued

    def start_heartbeat(self, stop: threading.Event) -> threading.Thread:
        """A thread calling heartbeat() every lease_s / 6 until `stop` is set."""

        def beat() -> None:
            while not stop.wait(self.lease_s / 6):
                try:
                    self.heartbeat()
                except Exception:  # a locked or full database: try again next beat
                    log.exception("heartbeat failed")

        thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        thread.start()
        return thread
