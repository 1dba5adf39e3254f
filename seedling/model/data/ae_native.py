"""Autoencoder data rendered natively at any size (512 px by default), never upscaled.

Four categories, the things the DiT will draw at 512 px: OpenMoji icons (rasterised from the
vector font at the size they are shown), shape scenes, words and bar charts (the knowledge
renderers, drawn at the canvas size). Training takes random crops of these images; evaluation uses
`heldout_set`, a fixed, seeded set per category whose icons are never in the training split.

Everything is a pure function of a `numpy.random.Generator`: same seed, same images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from seedling.model.data import knowledge as kn
from seedling.model.data.ae_images import _stylise
from seedling.model.data.icons import Icon, render_icon
from seedling.model.training import parse_weights

CATEGORIES = ("icons", "shapes", "words", "charts")
# Icons dominate the pixels the studio shows; words carry the finest detail an f32 latent must keep.
TRAIN_MIX = {"icons": 0.4, "shapes": 0.2, "words": 0.25, "charts": 0.15}
SPLIT_SEED = 19  # fixes which icons are held out; change it and every held-out number changes
HELDOUT_FRACTION = 0.1
BACKGROUNDS = tuple(kn.BACKGROUNDS.values())


def split_icons(icons: list[Icon], fraction: float = HELDOUT_FRACTION,
                seed: int = SPLIT_SEED) -> tuple[list[Icon], list[Icon]]:
    """(train, held_out): a seeded split by icon name, disjoint, independent of the list's order."""
    names = sorted({i.name for i in icons})
    held = set(np.random.default_rng(seed).permutation(names)[: max(1, round(fraction * len(names)))])
    return [i for i in icons if i.name not in held], [i for i in icons if i.name in held]


def _background(rng: np.random.Generator, p_white: float = 0.6) -> tuple[int, int, int]:
    return kn.WHITE if rng.random() < p_white else BACKGROUNDS[rng.integers(len(BACKGROUNDS))]


def render_icons(rng: np.random.Generator, icons: list[Icon], size: int) -> np.ndarray:
    """1-4 icons, each rasterised at its own displayed size, on a flat background."""
    canvas = Image.new("RGBA", (size, size), _background(rng) + (255,))
    n = int(rng.choice([1, 1, 2, 3, 4]))
    for _ in range(n):
        side = int(rng.integers(size // 3, size + 1)) if n == 1 else int(rng.integers(size // 5, size // 2 + 1))
        x, y = (int(rng.integers(0, size - side + 1)) for _ in range(2))
        glyph = Image.fromarray(render_icon(icons[rng.integers(len(icons))].char, side), "RGBA")
        canvas.alpha_composite(glyph, (x, y))
    return np.asarray(canvas.convert("RGB"))


def _maybe_smaller(rng: np.random.Generator, draw, size: int, background) -> np.ndarray:
    """`draw(s)` renders at s px; a third of the time it is drawn natively at half size and placed
    at a random spot, so the autoencoder also sees the smaller text and shapes a poster has."""
    if rng.random() >= 1 / 3:
        return draw(size)
    out = np.empty((size, size, 3), np.uint8)
    out[:] = background
    half = size // 2
    x, y = (int(rng.integers(0, size - half + 1)) for _ in range(2))
    out[y : y + half, x : x + half] = draw(half)
    return out


def render_shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    scene = replace(kn.random_scene(rng), background=_background(rng, 0.7))
    return _maybe_smaller(rng, lambda s: kn.render_scene(scene, s), size, scene.background)


def render_words(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    spec = replace(kn.random_word(rng), background=_background(rng, 0.7))
    if spec.color != "black" and spec.background != kn.WHITE:
        spec = replace(spec, color="black")  # coloured ink on a coloured ground can vanish (red on red)
    return _maybe_smaller(rng, lambda s: kn.render_word(spec, s), size, spec.background), spec.text


def render_charts(rng: np.random.Generator, size: int) -> np.ndarray:
    spec = kn.random_chart(rng)
    return _maybe_smaller(rng, lambda s: kn.render_chart(spec, s), size, kn.WHITE)


def render_image(category: str, rng: np.random.Generator, icons: list[Icon], size: int = 512) -> np.ndarray:
    """(size, size, 3) uint8 of one category."""
    if category == "icons":
        return render_icons(rng, icons, size)
    if category == "shapes":
        return render_shapes(rng, size)
    if category == "words":
        return render_words(rng, size)[0]
    if category == "charts":
        return render_charts(rng, size)
    raise ValueError(f"unknown category {category!r}; choose one of {CATEGORIES}")


def parse_mix(text: str) -> dict[str, float]:
    """"icons=0.55,words=0.2,..." -> the training mix, normalised to sum 1. Every category named
    must be one of `TRAIN_MIX`'s; one left out is not drawn."""
    mix = parse_weights(text, TRAIN_MIX, "category")
    if sum(mix.values()) <= 0:
        raise ValueError(f"mix {text!r}: give at least one category a positive weight, none negative")
    total = sum(mix.values())
    return {k: w / total for k, w in mix.items()}


def random_crops(rng: np.random.Generator, icons: list[Icon], n: int, crop: int, size: int = 512,
                 per_image: int = 4, p_style: float = 0.1, mix: dict[str, float] | None = None) -> np.ndarray:
    """(n, crop, crop, 3) uint8 crops of freshly rendered `size` px images of the training mix
    (`mix`, default `TRAIN_MIX`).

    A crop that is one flat colour teaches nothing, so up to 3 positions are tried for content.
    """
    if not 0 < crop <= size:
        raise ValueError(f"crop {crop} must be between 1 and the image size {size}")
    if crop == size:
        per_image = 1  # a whole image has one crop: no batch of copies
    cats, probs = zip(*(mix or TRAIN_MIX).items())
    out = []
    while len(out) < n:
        img = render_image(str(rng.choice(cats, p=probs)), rng, icons, size)
        if rng.random() < p_style:
            img = np.asarray(_stylise(Image.fromarray(img), rng))
        for _ in range(per_image):
            for _try in range(3):
                y, x = (int(v) for v in rng.integers(0, size - crop + 1, 2))
                patch = img[y : y + crop, x : x + crop]
                if patch.min(axis=(0, 1)).tolist() != patch.max(axis=(0, 1)).tolist():
                    break
            out.append(patch)
    return np.stack(out[:n])


def step_crops(seed: int, step: int, icons: list[Icon], n: int, crop: int, size: int = 512,
               mix: dict[str, float] | None = None) -> np.ndarray:
    """The crops of training step `step`: `random_crops` from a generator seeded by (seed, step)
    alone, so a step's batch is the same whichever process draws it and whenever."""
    return random_crops(np.random.default_rng([seed, step]), icons, n, crop, size, mix=mix)


def as_delivered(item):
    """DataLoader collate for `CropBatches`: the (step, crops) pair as it is (a module function,
    not a lambda, so that workers started by spawn or forkserver can unpickle it)."""
    return item


class CropBatches(torch.utils.data.IterableDataset):
    """`step_crops` for steps start, start+1, ... < max_steps as (step, crops), split
    round-robin over a DataLoader's workers, whose in-order delivery gives the steps back in
    order: rendering (10-30 ms of one core per 512 px image) runs beside the training step,
    and the batches do not depend on the number of workers."""

    def __init__(self, seed: int, start: int, max_steps: int, icons: list[Icon], n: int, crop: int,
                 size: int = 512, mix: dict[str, float] | None = None):
        self.seed, self.start, self.max_steps = seed, start, max_steps
        self.icons, self.n, self.crop, self.size, self.mix = icons, n, crop, size, mix

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.start + wid, self.max_steps, nw):
            yield step, step_crops(self.seed, step, self.icons, self.n, self.crop, self.size, self.mix)


@dataclass(frozen=True)
class HeldOutImage:
    category: str
    image: np.ndarray  # (size, size, 3) uint8
    text: str = ""  # the word drawn, for "words"


def heldout_set(icons: list[Icon], n_per_category: int = 16, size: int = 512, seed: int = 1234) -> list[HeldOutImage]:
    """A fixed evaluation set: `n_per_category` images of each category, icons from the held-out
    split only (pass all icons; the split is taken here)."""
    held = split_icons(icons)[1]
    out = []
    for k, cat in enumerate(CATEGORIES):
        rng = np.random.default_rng([seed, k])
        for _ in range(n_per_category):
            if cat == "words":
                img, text = render_words(rng, size)
                out.append(HeldOutImage(cat, img, text))
            else:
                out.append(HeldOutImage(cat, render_image(cat, rng, held, size)))
    return out
