"""The job service: submit (validate, store the row, then queue), cancel, re-run, watch, requeue."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from seedling.backend.errors import InvalidJob, QueueFull, not_found_as_readable
from seedling.backend.specs import FinetuneSpec, ImageJobSpec, JobSpec, as_row_id, parse_spec, spec_json
from seedling.model.finetune_data import MIN_SIDE
from seedling.storage.adapters_base import AdapterStoreBase
from seedling.storage.adapters_common import AdapterNotFound
from seedling.storage.images_base import ImageStoreBase
from seedling.storage.images_common import ImageNotFound, ImageRecord
from seedling.storage.jobs_base import JobStoreBase
from seedling.storage.jobs_common import ACTIVE_STATUSES, JobNotFound, JobRecord, JobStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobView:
    """A job as the UI shows it while it waits or runs."""

    job: JobRecord
    queue_position: int | None  # 1 = next to run; None unless queued
    images: list[ImageRecord]  # its outputs, once it succeeded


class JobService:
    def __init__(
        self,
        jobs: JobStoreBase,
        images: ImageStoreBase,
        enqueue: Callable[[int], None],
        max_queue: int,
        max_attempts: int = 3,
        adapters: AdapterStoreBase | None = None,
        pending: Callable[[], int] | None = None,
    ):
        self._jobs = jobs
        self._pending = pending  # how many wake-ups wait on the queue (None: unknown)
        self._images = images
        self._enqueue = enqueue
        self.max_queue = max_queue
        self.max_attempts = max_attempts
        self._adapters = adapters

    def _check_inputs(self, spec: ImageJobSpec | FinetuneSpec) -> None:
        """Inputs must exist now; a size mismatch is caught here, not after a wait in the queue."""
        try:
            inputs = [self._images.get(image_id) for image_id, _ in spec.inputs()]
            mask = self._images.get(spec.mask_id) if spec.mask_id is not None else None
        except ImageNotFound as err:
            raise InvalidJob(f"input {err}") from None
        if self._adapters is not None:
            for use in spec.adapters:
                try:
                    self._adapters.get(use.adapter_id)
                except AdapterNotFound as err:
                    raise InvalidJob(str(err)) from None
        if isinstance(spec, FinetuneSpec):
            self._check_finetune(spec, inputs)
            return
        if mask is not None and inputs and (mask.width, mask.height) != (inputs[0].width, inputs[0].height):
            raise InvalidJob(
                f"the mask is {mask.width}x{mask.height} but the source image is "
                f"{inputs[0].width}x{inputs[0].height}"
            )
        if spec.task == "inpaint" and (spec.width, spec.height) != (inputs[0].width, inputs[0].height):
            raise InvalidJob(
                f"a masked edit keeps the source's size: the source is {inputs[0].width}x{inputs[0].height} "
                f"but the job asks for {spec.width}x{spec.height}"
            )

    def _check_finetune(self, spec: FinetuneSpec, inputs: list[ImageRecord]) -> None:
        """The adapter name is free and every picture is big enough to crop to the model's grid."""
        if self._adapters is not None and self._adapters.by_name(spec.name) is not None:
            raise InvalidJob(f"an adapter named {spec.name!r} already exists: pick another name or delete it")
        for job in self._jobs.list(ACTIVE_STATUSES):
            if job.kind == "finetune" and job.spec.get("name") == spec.name:
                raise InvalidJob(f"fine-tune job {job.id} is already training an adapter named {spec.name!r}")
        small = [im for im in inputs if min(im.width, im.height) < MIN_SIDE]
        if small:
            im = small[0]
            raise InvalidJob(
                f"training image #{im.id} is {im.width}x{im.height} pixels; each side needs at least "
                f"{MIN_SIDE} px ({len(small)} image(s) too small)"
            )

    def submit(self, spec: JobSpec, rerun_of: int | None = None) -> JobRecord:
        """Validate, store the job row, then queue it. Raises InvalidJob or QueueFull."""
        self._check_inputs(spec)
        active = self._jobs.count_active()
        if active >= self.max_queue:
            raise QueueFull(f"the queue is full ({active} jobs waiting or running); try again in a moment")
        job = self._jobs.create(spec.kind, spec_json(spec), rerun_of=rerun_of, adapter_id=spec.adapter_id)
        try:
            self._enqueue(job.id)
        except Exception as err:
            self._jobs.finish(job.id, JobStatus.FAILED, f"could not queue the job: {err}")
            raise
        return job

    def submit_dict(self, data: dict) -> JobRecord:
        return self.submit(parse_spec(data))

    def rerun(self, job_id: int) -> JobRecord:
        """The same spec, seed included, as a new job."""
        job = self.get(job_id)
        return self.submit(parse_spec(job.spec), rerun_of=job.id)

    def cancel(self, job_id: int) -> JobStatus:
        job_id = as_row_id(job_id, "a job id")
        with not_found_as_readable(JobNotFound):
            return self._jobs.request_cancel(job_id)

    def get(self, job_id: int) -> JobRecord:
        """The job row; NotFound (readable) for an id that names no job, InvalidJob for a non-id."""
        with not_found_as_readable(JobNotFound):
            return self._jobs.get(as_row_id(job_id, "a job id"))

    def view(self, job_id: int) -> JobView:
        job = self.get(job_id)
        position = self._jobs.queue_position(job.id) if job.status == JobStatus.QUEUED else None
        images = self._images.for_job(job.id) if job.status == JobStatus.SUCCEEDED else []
        return JobView(job=job, queue_position=position, images=images)

    def views_of(self, job_ids: list[int]) -> list[JobView]:
        """The views (without images) of the jobs among `job_ids` that exist, in their order, from
        two reads however many they are: what a tab's job list shows."""
        rows = self._jobs.get_many(job_ids)
        places = self._jobs.queue_positions() if any(r.status == JobStatus.QUEUED for r in rows.values()) else {}
        return [JobView(job=rows[i], queue_position=places.get(i), images=[]) for i in job_ids if i in rows]

    def inputs_in_use(self) -> set[int]:
        """Image ids that queued or running jobs will read (sources, masks, references, training
        pictures): emptying the trash keeps them, so a job never loses its input while it waits."""
        ids: set[int] = set()
        for job in self._jobs.list(ACTIVE_STATUSES, limit=100_000):
            try:
                spec = parse_spec(job.spec)
            except InvalidJob:  # a row no code can run; it fails on its own when its turn comes
                continue
            ids.update(image_id for image_id, _ in spec.inputs())
            if spec.mask_id is not None:
                ids.add(spec.mask_id)
        return ids

    def preview(self, job_id: int) -> bytes | None:
        return self._jobs.get_preview(job_id)

    def requeue_interrupted(self, owners: Iterable[str] | None = None) -> list[int]:
        """Jobs a crash left running go back on the queue at their old place in line: those whose
        worker's lease expired, those of `owners` (workers known dead), or, with owners=None (a
        start with no worker alive: the SQLite queue), every running job. Then the queue gets
        exactly as many wake-ups as it lacks for the queued jobs (a message taken by a worker
        that died before it claimed a job is replaced; none is doubled)."""
        requeued, failed = self._jobs.reset_interrupted(self.max_attempts, owners)
        for job_id in failed:
            log.warning("job %d failed: the worker died on it %d times", job_id, self.max_attempts)
        queued = sorted(job.id for job in self._jobs.list([JobStatus.QUEUED], limit=10 * self.max_queue))
        missing = len(queued) - (self._pending() if self._pending is not None else 0)
        for job_id in queued[len(queued) - missing :] if missing > 0 else []:
            self._enqueue(job_id)
        if requeued:
            log.info("requeued %d interrupted jobs: %s", len(requeued), requeued)
        return requeued
