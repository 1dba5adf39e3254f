"""A fine-tune's training set as the model sees it: pictures cut to the grid, encoded once into
autoencoder latents and MiniLM states (both frozen), fingerprinted so a resumed run can tell
whether it trains on the same pictures, and cached in the work folder as safetensors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import save_file

from seedling.atomic import write_atomic
from seedling.model.autoencoder import images_to_tensor
from seedling.model.finetune_data import CaptionedImage, Example, prepare_image, validate_examples


@dataclass
class EncodedSet:
    task: str  # "t2i" (captioned images) or "edit" (pairs)
    x0: torch.Tensor  # (N, 1, C, h, w) target latents
    refs: torch.Tensor | None  # (N, C, h, w) source latents of edit pairs
    states: torch.Tensor  # (N, L, 384) caption / instruction token states
    pooled: torch.Tensor  # (N, 384)
    empty_states: torch.Tensor  # (1, L, 384) the empty prompt, for caption dropout
    empty_pooled: torch.Tensor  # (1, 384)
    fingerprint: str

    def __len__(self) -> int:
        return self.x0.shape[0]

    def to(self, device) -> EncodedSet:
        move = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return EncodedSet(**move)


def _texts(examples: list[Example]) -> list[str]:
    return [e.caption if isinstance(e, CaptionedImage) else e.instruction for e in examples]


def _prepared(examples: list[Example], size: int) -> tuple[list[Image.Image], list[Image.Image]]:
    """(targets, sources): the pictures cut to the grid; sources is empty for captioned images."""
    if isinstance(examples[0], CaptionedImage):
        return [prepare_image(e.image, size) for e in examples], []
    return [prepare_image(e.after, size) for e in examples], [prepare_image(e.before, size) for e in examples]


def fingerprint(examples: list[Example], size: int) -> str:
    """Identifies the training set as the model sees it (pixels after cropping, texts, size)."""
    h = hashlib.sha256(f"{size}:{type(examples[0]).__name__}".encode())
    targets, sources = _prepared(examples, size)
    for im, text in zip(targets, _texts(examples)):
        h.update(im.tobytes())
        h.update(text.encode())
    for im in sources:
        h.update(im.tobytes())
    return h.hexdigest()


@torch.no_grad()
def encode_examples(pipe, examples: list[Example], size: int) -> EncodedSet:
    """Latents and text states of the whole set (the autoencoder and text encoder stay frozen)."""
    validate_examples(examples, size)
    if size % pipe.grid:
        raise ValueError(
            f"the training size must be a multiple of the model's grid ({pipe.grid} px), got {size}"
        )
    targets, sources = _prepared(examples, size)

    def encode(images: list[Image.Image]) -> torch.Tensor:
        return (
            torch.cat(
                [
                    pipe.autoencoder.encode(images_to_tensor(images[i : i + 32], pipe.device))
                    for i in range(0, len(images), 32)
                ]
            )
            .float()
            .cpu()
        )

    states, pooled = pipe.text_encoder.encode(_texts(examples))
    empty_states, empty_pooled = pipe.text_encoder.encode([""])
    return EncodedSet(
        task="t2i" if not sources else "edit",
        x0=encode(targets)[:, None],
        refs=encode(sources) if sources else None,
        states=states.float().cpu(),
        pooled=pooled.float().cpu(),
        empty_states=empty_states.float().cpu(),
        empty_pooled=empty_pooled.float().cpu(),
        fingerprint=fingerprint(examples, size),
    )


def save_encoded(data: EncodedSet, path: Path) -> None:
    tensors = {k: v.contiguous() for k, v in vars(data).items() if isinstance(v, torch.Tensor)}
    meta = {"task": data.task, "fingerprint": data.fingerprint}
    write_atomic(path, lambda f: save_file(tensors, str(f), metadata=meta))


def load_encoded(path: Path) -> EncodedSet:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is no dict
    return EncodedSet(
        task=meta["task"], fingerprint=meta["fingerprint"], refs=tensors.pop("refs", None), **tensors
    )
