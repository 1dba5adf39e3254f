"""The fine-tune service: turn an upload (images + captions, sidecars, zips, or edit pairs) into a
validated training set, store its pictures, and submit the fine-tune job."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from seedling.backend.errors import InvalidJob
from seedling.backend.history import HistoryService
from seedling.backend.jobs import JobService
from seedling.backend.specs import make_spec
from seedling.model.finetune_data import (
    CaptionedImage,
    DatasetError,
    EditPair,
    Example,
    load_files,
    validate_examples,
)
from seedling.storage.jobs_common import JobRecord, JobStatus


class FinetuneService:
    def __init__(self, jobs: JobService, history: HistoryService, work_root: Path | None = None):
        self._jobs = jobs
        self._history = history
        self._work_root = work_root  # the worker's scratch folders (FileStore root / "work")

    def stop(self, job_id: int) -> JobStatus:
        """Ask a queued or running fine-tune job to stop at its next step and keep the adapter
        trained so far (Cancel discards it). InvalidJob for another kind of job or one that ended."""
        from seedling.backend.finetune_runner import request_stop

        job = self._jobs.get(job_id)
        if job.kind != "finetune":
            raise InvalidJob(f"job {job.id} is not a fine-tune job: only training can be stopped")
        if job.status.finished:
            raise InvalidJob(f"job {job.id} has already ended ({job.status.value})")
        if self._work_root is None:
            raise InvalidJob("this app has no worker folder to reach the training job")
        request_stop(self._work_root / f"job-{job.id}")
        return job.status

    @staticmethod
    def read_upload(paths: Iterable[str | Path]) -> list[Example]:
        """Examples from uploaded files; InvalidJob naming unreadable files or unmatched pairs.
        Missing captions are allowed here (the UI asks for them) and refused at submit."""
        paths = list(paths) if isinstance(paths, (list, tuple)) else paths
        for p in paths if isinstance(paths, list) else []:
            if not isinstance(p, (str, Path)) or "\x00" in str(p):
                raise InvalidJob(f"{str(p)[:40]!r} is not the name of an uploaded file")
        try:
            return load_files(paths)
        except DatasetError as err:
            raise InvalidJob(str(err)) from None
        except OSError as err:  # gone, a folder, unreadable: name the file, not the errno
            name = Path(err.filename).name if err.filename else "an uploaded file"
            raise InvalidJob(f"could not read {name!r}: it is missing or not a file") from None

    @staticmethod
    def with_texts(examples: Sequence[Example], texts: Sequence[str]) -> list[Example]:
        """The examples with captions (or instructions) replaced by `texts`, in order."""
        if len(texts) != len(examples):
            raise InvalidJob(f"{len(texts)} captions for {len(examples)} training examples")
        out: list[Example] = []
        for ex, text in zip(examples, texts):
            text = (text or "").strip()
            if isinstance(ex, CaptionedImage):
                out.append(CaptionedImage(ex.name, ex.image, text))
            else:
                out.append(EditPair(ex.name, ex.before, ex.after, text))
        return out

    def submit(self, name: str, examples: Sequence[Example], **params) -> JobRecord:
        """Validate the set, store its pictures as history uploads, queue the job. `params` are
        FinetuneSpec fields (method, rank, alpha, steps, learning_rate, ...)."""
        try:
            validate_examples(list(examples))
        except DatasetError as err:
            raise InvalidJob(str(err)) from None
        make_spec("finetune", name=name, images=[{"image_id": 0, "caption": "x"}], **params)  # fail fast
        store = self._history.store_input
        if isinstance(examples[0], CaptionedImage):
            fields = {"images": [{"image_id": store(e.image).id, "caption": e.caption} for e in examples]}
        else:
            fields = {
                "pairs": [
                    {
                        "before_image_id": store(e.before).id,
                        "after_image_id": store(e.after).id,
                        "instruction": e.instruction,
                    }
                    for e in examples
                ]
            }
        return self._jobs.submit(make_spec("finetune", name=name, **fields, **params))
