"""The worker context: the only way job code reports progress and previews, checks for cancel,
reads its input images and saves its outputs (as InvokeAI's invocation context)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from storage.files import FileStore
from storage.images_base import ImageStoreBase
from storage.images_common import ImageRecord, NewImage, ParentLink
from storage.jobs_base import JobStoreBase

PREVIEW_SIDE = 256  # previews are for the eye; keep the rows small


def preview_png(image: Image.Image) -> bytes:
    preview = image.convert("RGB")
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buf = io.BytesIO()
    preview.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@dataclass(frozen=True)
class OutputImage:
    """One result to save, with what goes into its row besides the file."""

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
    def __init__(self, job_id: int, jobs: JobStoreBase, images: ImageStoreBase, files: FileStore):
        self.job_id = job_id
        self._jobs = jobs
        self._images = images
        self._files = files

    def progress(self, step: int, total: int, preview: Image.Image | None = None) -> None:
        self._jobs.set_progress(
            self.job_id, step, total, preview_png(preview) if preview is not None else None
        )

    def cancel_requested(self) -> bool:
        return self._jobs.is_cancel_requested(self.job_id)

    def load_image(self, image_id: int, mode: str = "RGB") -> Image.Image:
        record = self._images.get(image_id)
        return self._files.open_image(record.file_path).convert(mode)

    def save_outputs(
        self, outputs: Sequence[OutputImage], parents: Sequence[ParentLink], link_siblings: bool
    ) -> list[ImageRecord]:
        """Write every file (atomically, hashed), then commit all rows and edges in one transaction."""
        new_images = []
        for out in outputs:
            stored = self._files.save_png(out.image.convert("RGB"), "images", out.parameters)
            new_images.append(
                NewImage(
                    origin="output",
                    file_path=stored.rel_path,
                    sha256=stored.sha256,
                    pixel_hash=stored.pixel_hash,
                    file_size=stored.size,
                    width=stored.width,
                    height=stored.height,
                    job_id=self.job_id,
                    output_index=out.output_index,
                    seed=out.seed,
                    task=out.task,
                    prompt=out.prompt,
                    params=out.params,
                    timings=out.timings,
                    adapter_id=out.adapter_id,
                )
            )
        try:
            return self._images.add(new_images, parents, link_siblings=link_siblings)
        except Exception:
            for new in new_images:  # no row points at these files: do not leave them behind
                self._files.delete(new.file_path)
            raise


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
