"""Generators for the harness: turn an evaluation case into output images (model, ground truth, AE round trip)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from seedling.model.data import tasks as tk


class OracleGenerator:
    """Returns each case's ground-truth outputs: scores what the judges make of perfect images."""

    name = "oracle"

    def __call__(self, sample: tk.Sample, seed: int) -> list[np.ndarray]:
        return [o.copy() for o in sample.outputs]


class AutoencoderGenerator:
    """Returns each case's ground truth after an autoencoder round trip.

    What the judges make of these is the ceiling the model can reach through its decoder (and the
    PSNR a perfect edit keeps outside the edited region without paste-back).
    """

    name = "oracle-ae"

    def __init__(self, autoencoder):
        self.autoencoder = autoencoder.eval()

    def __call__(self, sample: tk.Sample, seed: int) -> list[np.ndarray]:
        import torch

        from seedling.model.autoencoder import images_to_tensor, tensor_to_images

        with torch.no_grad():
            x = images_to_tensor(sample.outputs)
            rec = self.autoencoder.decode(self.autoencoder.encode(x))
        return [np.asarray(im) for im in tensor_to_images(rec)]


class PipelineGenerator:
    """Generates each case with a `SeedlingPipeline` (None = the model's default for a setting).

    `size`: the output's side in px, by default the model's native size (`default_size`); a case
    whose meta names an "output_size" (the 128 -> 512 upscale) is generated at that size. Each
    output is judged at its ground truth's size (128 px for every case but those): the pipeline
    resizes the references to the output's size itself, and the output is resized to the truth's."""

    name = "model"

    def __init__(
        self,
        pipe,
        steps: int | None = None,
        guidance: float | None = None,
        image_guidance: float | None = None,
        size: int | None = None,
    ):
        self.pipe, self.steps, self.guidance, self.image_guidance = pipe, steps, guidance, image_guidance
        self.size = size or pipe.settings.default_size
        self.tasks = tuple(pipe.dit.dims.tasks)  # the harness skips suites of other tasks

    def __call__(self, sample: tk.Sample, seed: int) -> list[np.ndarray]:
        size = sample.meta.get("output_size", self.size)
        res = self.pipe(
            prompt=sample.prompt,
            task=sample.task,
            images=[Image.fromarray(r) for r in sample.refs] or None,
            mask=Image.fromarray(sample.mask, "L") if sample.mask is not None else None,
            num_outputs=len(sample.outputs),
            steps=self.steps,
            guidance=self.guidance,
            image_guidance=self.image_guidance,
            seed=seed,
            height=size,
            width=size,
        )
        outs = []
        truth_h, truth_w = sample.outputs[0].shape[:2]
        for im in res.images:
            im = im.convert("RGB")
            if im.size != (truth_w, truth_h):
                im = im.resize((truth_w, truth_h), Image.LANCZOS)
            outs.append(np.asarray(im))
        return outs
