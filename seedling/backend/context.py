"""The worker context: the only way job code reports progress and previews, checks for cancel,
reads its input images and saves its outputs (as InvokeAI's invocation context)."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from seedling.backend.faults import crash_point
from seedling.configs import shared_fields
from seedling.storage.adapters_base import AdapterStoreBase
from seedling.storage.adapters_common import AdapterNameTaken, AdapterRecord, NewAdapter
from seedling.storage.files import FileStore, StoredFile
from seedling.storage.images_base import ImageStoreBase
from seedling.storage.images_common import ImageRecord, NewImage, ParentLink
from seedling.storage.jobs_base import JobStoreBase

PREVIEW_SIDE = 256  # previews are for the eye; keep the rows small

# Fault-injection for the crash tests: seconds the worker waits after reporting each step, so a job
# lasts long enough to be killed in its middle on any CPU (the tiny test model runs 50 steps in
# ~0.1 s). Unset or 0 in normal use; tests/conftest.AppProcess(step_delay_s=...) sets it.
STEP_DELAY_ENV = "SEEDLING_TEST_STEP_DELAY_S"


def step_delay_s() -> float:
    """The injected per-step delay from the environment, in seconds: 0 when it is unset, not a
    number, or outside (0, 60)."""
    try:
        value = float(os.environ.get(STEP_DELAY_ENV, "0"))
    except ValueError:
        return 0.0
    return value if 0.0 < value < 60.0 else 0.0


def preview_png(image: Image.Image) -> bytes:
    preview = image.convert("RGB")
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buf = io.BytesIO()
    preview.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class OutputImage:
    """One result to save, with what goes into its row besides the file (the fields named like
    NewImage's: `JobContext._new_image`)."""

    image: Image.Image
    output_index: int
    parameters: str  # A1111-style text for the PNG
    seed: int
    task: str
    prompt: str
    params: dict
    adapter_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


class JobContext:
    def __init__(
        self,
        job_id: int,
        jobs: JobStoreBase,
        images: ImageStoreBase,
        files: FileStore,
        adapters: AdapterStoreBase | None = None,
        can_yield: bool = False,
        owner: str | None = None,
        lease_lost: Callable[[], bool] = lambda: False,
    ):
        self.job_id = job_id
        self.owner = owner  # the worker whose lease the job runs under
        self._lease_lost = lease_lost
        self._jobs = jobs
        self._images = images
        self._files = files
        self._adapters = adapters
        self.can_yield = can_yield  # raising JobYielded requeues the job (the runtime can enqueue)
        self._step_delay_s = step_delay_s()

    def progress(self, step: int, total: int, preview: Image.Image | None = None) -> None:
        self._jobs.set_progress(
            self.job_id, step, total, preview_png(preview) if preview is not None else None
        )
        crash_point("progress", self.job_id)
        if self._step_delay_s:
            time.sleep(self._step_delay_s)

    def cancel_requested(self) -> bool:
        """Cancel asked by the user, or this worker lost the job's lease (it was requeued)."""
        return self._lease_lost() or self._jobs.is_cancel_requested(self.job_id)

    def load_image(self, image_id: int, mode: str = "RGB") -> Image.Image:
        record = self._images.get(image_id)
        return self._files.open_image(record.file_path).convert(mode)

    def save_outputs(
        self, outputs: Sequence[OutputImage], parents: Sequence[ParentLink], link_siblings: bool
    ) -> list[ImageRecord]:
        """Write every file (atomically, hashed), then commit all rows and edges together with the
        job's SUCCEEDED status in one transaction: a job has all its outputs and is done, or has
        none and is not. If anything fails, remove the files already written (no row points at
        them). Raises LeaseLost when this worker no longer holds the job."""
        new_images: list[NewImage] = []
        try:
            for out in outputs:
                stored = self._files.save_png(
                    out.image.convert("RGB"), "images", out.parameters, tag=f"job{self.job_id}"
                )
                new_images.append(self._new_image(out, stored))
            crash_point("files_written", self.job_id)
            return self._jobs.complete(self.job_id, new_images, parents, link_siblings, self.owner)
        except Exception:
            self._discard(new_images)  # no row points at these files: do not leave them behind
            raise

    def _discard(self, new_images: Sequence[NewImage]) -> None:
        for new in new_images:
            try:
                self._files.delete(new.file_path)
            except OSError:  # a read-only folder: the original error is what the user needs
                pass

    def _new_image(self, out: OutputImage, stored: StoredFile) -> NewImage:
        """The row: the stored file's fields, this job, and the output's fields named like the row's."""
        return NewImage.from_stored(stored, "output", job_id=self.job_id, **shared_fields(out, NewImage))

    # -- long jobs (fine-tuning) ---------------------------------------------------------------
    def others_waiting(self, exclude_kind: str | None = None) -> bool:
        """Some other job (not of `exclude_kind`) waits in the queue: a long job may yield to it."""
        return self._jobs.count_queued(exclude_kind) > 0

    def report_metrics(self, metrics: dict[str, Any]) -> None:
        self._jobs.set_metrics(self.job_id, metrics)

    def sweep_work_dirs(self) -> None:
        """Remove the scratch folders of jobs that finished without cleaning up (cancelled while
        waiting between chunks, failed, deleted)."""
        import shutil

        from seedling.storage.jobs_common import JobNotFound

        for path in (self._files.root / "work").glob("job-*"):
            try:
                job_id = int(path.name.removeprefix("job-"))
                finished = job_id != self.job_id and self._jobs.get(job_id).status.finished
            except (ValueError, JobNotFound):
                finished = True
            if finished:
                shutil.rmtree(path, ignore_errors=True)

    def work_dir(self) -> Path:
        """This job's scratch folder (checkpoints); it survives restarts, the job removes it."""
        path = self._files.root / "work" / f"job-{self.job_id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- adapters --------------------------------------------------------------------------------
    def _adapter_store(self) -> AdapterStoreBase:
        if self._adapters is None:
            raise LookupError("this worker has no adapter store")
        return self._adapters

    def adapter(self, adapter_id: int) -> tuple[AdapterRecord, Path]:
        """An adapter's row and file; LookupError / FileNotFoundError with a readable message."""
        record = self._adapter_store().get(adapter_id)
        if not record.file_path or not self._files.path(record.file_path).exists():  # a file or a peft folder
            raise FileNotFoundError(f"the file of adapter {record.name!r} (#{record.id}) is missing")
        return record, self._files.path(record.file_path)

    def save_adapter(self, write: Callable[[Path], None], new: NewAdapter, folder: bool = True) -> AdapterRecord:
        """`write(path)` writes the adapter (atomically) at a path fixed by this job, then the row
        is added: a peft folder (`folder`), or a .safetensors file. The row's sha256 is of the
        weights file. A rerun after a crash overwrites the same files and finds its row."""
        existing = self._adapter_store().by_job(self.job_id)
        if existing is not None:
            return existing
        rel_path = f"adapters/job-{self.job_id}" + ("" if folder else ".safetensors")
        path = self._files.path(rel_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        weights = path / "adapter_model.safetensors" if folder else path
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        new = replace(new, file_path=rel_path, sha256=digest, job_id=self.job_id)
        base, n = new.name, 2
        while True:
            try:
                return self._adapter_store().add(new)
            except AdapterNameTaken:  # taken since submit (two jobs raced for it): keep both
                new = replace(new, name=f"{base}-{n}")
                n += 1
            except Exception:
                from seedling.model.adapters import delete_adapter_files

                delete_adapter_files(path)
                raise


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
