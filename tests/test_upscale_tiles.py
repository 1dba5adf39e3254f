"""Upscales larger than the model's native size, drawn in overlapping native-size tiles
(`SeedlingPipeline.upscale_tiled`, pipeline.json's `upscale_tiled`)."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from seedling.model.adapters import Adapter, active_adapters, added_adapters
from seedling.model.pipeline import SeedlingPipeline
from seedling.model.postprocess import tile_starts, tile_weight


@pytest.mark.parametrize(("length", "tile"), [(128, 32), (40, 32), (32, 32), (20, 32), (100, 64)])
def test_tiles_cover_the_axis_overlapping_and_end_flush(length, tile):
    starts = tile_starts(length, tile)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if tile >= length:
        assert starts == [0]
        return
    assert starts[-1] == length - tile
    assert all(b - a < tile for a, b in itertools.pairwise(starts))  # every pair overlaps: no gap
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + tile] = True
    assert covered.all()
    w = tile_weight(tile, tile, tile // 8)
    assert w.shape == (tile, tile, 1) and w.min() > 0 and w[tile // 2, tile // 2, 0] == 1.0
    assert w[0, tile // 2, 0] < w[tile // 8, tile // 2, 0]  # fades towards the edge


def _pipe(native: int = 32) -> SeedlingPipeline:
    torch.manual_seed(0)
    pipe = SeedlingPipeline.from_config("tiny")
    with torch.no_grad():  # a new DiT's zero-initialised gates would make every block a no-op
        for prm in pipe.dit.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    pipe.settings = dataclasses.replace(pipe.settings, default_size=native, upscale_tiled=True,
                                        upscale_keeps_input=True)
    return pipe


def _small(side: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    x = np.kron(rng.integers(0, 256, (side // 4, side // 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    return Image.fromarray(x)


def test_an_upscale_above_the_native_size_is_drawn_in_tiles_that_give_back_the_input():
    pipe = _pipe()
    small = _small(24)  # x4 -> 96 px: tiles of 32 px from 8 px of the input
    calls = []
    out = pipe(task="upscale", images=[small], height=96, width=96, steps=2, seed=3,
               callback=lambda i, n, p: calls.append((i, n, p)))
    assert out.images[0].size == (96, 96)
    n = len(tile_starts(24, 8)) ** 2
    assert out.parameters["tiles"] == {"count": n, "width": 32, "height": 32} and out.parameters["input_kept"]
    # one progress bar over every tile's steps, with a preview of the picture so far after each tile
    # but the last (the result comes right after)
    assert [i for i, _, _ in calls] == list(range(1, 2 * n + 1)) and {t for _, t, _ in calls} == {2 * n}
    assert all((p is not None) == (i % 2 == 0 and i < 2 * n) for i, _, p in calls)
    assert [p for _, _, p in calls if p is not None][-1].size == (96, 96)
    # the output, area-averaged down 4x, is the input (back-projection over the blended tiles)
    back = np.asarray(out.images[0], np.float32).reshape(24, 4, 24, 4, 3).mean((1, 3))
    assert np.abs(back - np.asarray(small, np.float32)).mean() < 2.0
    again = pipe(task="upscale", images=[small], height=96, width=96, steps=2, seed=3)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(out.images[0]))
    # a tile is the upscale task on its part of the input, as at the native size: a single-tile
    # picture (the native size itself) is drawn in one pass, as before
    one = pipe(task="upscale", images=[_small(8)], height=32, width=32, steps=2, seed=3)
    assert "tiles" not in one.parameters


def test_tiles_take_any_aspect_and_factor_2_and_off_means_one_pass():
    pipe = _pipe()
    wide = _small(16).resize((40, 16), Image.NEAREST)
    out = pipe(task="upscale", images=[wide], height=32, width=80, steps=1, seed=0)  # x2
    assert out.images[0].size == (80, 32) and out.parameters["tiles"]["count"] == len(tile_starts(40, 16))
    pipe.settings = dataclasses.replace(pipe.settings, upscale_tiled=False)
    assert "tiles" not in pipe(task="upscale", images=[wide], height=32, width=80, steps=1, seed=0).parameters


def test_a_tiled_upscale_asks_for_a_trained_factor_in_a_sentence():
    pipe = _pipe()
    with pytest.raises(ValueError, match=r"for this 24x24 picture ask 48x48 or 96x96, not 80x80"):
        pipe(task="upscale", images=[_small(24)], height=80, width=80, steps=1)
    with pytest.raises(ValueError, match="returns pictures"):
        pipe(task="upscale", images=[_small(24)], height=96, width=96, steps=1, output_type="latent")


def test_a_tiled_upscale_applies_the_task_adapter_once_for_all_its_tiles():
    """The upscale task's adapter is merged once around the tiles, not once per tile; the tiles'
    own calls find it applied (`added_adapters` does not add an adapter twice), and the weights
    are the original bits afterwards."""
    pipe = _pipe()
    names = [n for n, p in pipe.dit.named_parameters() if n.startswith("blocks.") and p.ndim == 2][:4]
    adapter = Adapter("full", {n: 0.1 * torch.ones_like(dict(pipe.dit.named_parameters())[n]) for n in names},
                      {"name": "upscale", "task": "upscale"})
    before = {n: p.detach().clone() for n, p in pipe.dit.named_parameters()}
    with added_adapters(pipe.dit, [(adapter, 1.0)]):
        once = {n: p.detach().clone() for n, p in pipe.dit.named_parameters()}
        with added_adapters(pipe.dit, [(adapter, 1.0)]):  # the same adapter again: no change
            assert all(torch.equal(p, once[n]) for n, p in pipe.dit.named_parameters())
            assert active_adapters(pipe.dit) == [("upscale", 1.0)]
    assert all(torch.equal(p, before[n]) for n, p in pipe.dit.named_parameters())
    pipe.task_adapters = {"upscale": adapter}
    seen = []
    pipe(task="upscale", images=[_small(24)], height=96, width=96, steps=1, seed=0,
         callback=lambda i, n, p: seen.append(active_adapters(pipe.dit)))
    assert seen and all(s == [("upscale", 1.0)] for s in seen)
    assert all(torch.equal(p, before[n]) for n, p in pipe.dit.named_parameters())
