"""SeedlingPipeline on the tiny random-weight config: API, determinism, masks, errors, persistence."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from seedling.model.autoencoder import images_to_tensor, tensor_to_images
from seedling.model.pipeline import GenerationCancelled, SeedlingPipeline, feather_mask, transfer_detail


@pytest.fixture(scope="module")
def pipe():
    p = SeedlingPipeline.from_config("tiny", seed=0)
    for prm in p.dit.parameters():  # leave the zero init so outputs depend on the inputs
        with torch.no_grad():
            prm.add_(torch.randn_like(prm) * 0.05)
    return p


def rgb(seed, size=(64, 64)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def arr(im):
    return np.asarray(im, dtype=np.int16)


def test_same_seed_same_images_and_different_seed_differs(pipe):
    a = pipe(prompt="a fox", seed=3, height=64, width=64, num_outputs=2)
    b = pipe(prompt="a fox", seed=3, height=64, width=64, num_outputs=2)
    c = pipe(prompt="a fox", seed=4, height=64, width=64, num_outputs=2)
    assert len(a.images) == 2 and a.images[0].size == (64, 64)
    assert all(np.array_equal(arr(x), arr(y)) for x, y in zip(a.images, b.images))
    assert not np.array_equal(arr(a.images[0]), arr(c.images[0]))
    assert a.seed == 3 and a.parameters["steps"] == pipe.default_steps


def test_cache_and_no_cache_give_the_same_images(pipe):
    refs = [rgb(i) for i in range(3)]
    kw = dict(prompt="put them together", task="compose", images=refs, seed=1, height=64, width=64,
              guidance=2.0, image_guidance=1.5, steps=3)
    a = pipe(use_ref_cache=True, **kw).images[0]
    b = pipe(use_ref_cache=False, **kw).images[0]
    assert np.abs(arr(a) - arr(b)).max() <= 1  # uint8 rounding of a <=1e-4 relative latent difference


def test_inpaint_keeps_unmasked_pixels_exactly(pipe):
    src = rgb(7)
    m = np.zeros((64, 64), np.uint8)
    m[16:40, 20:50] = 255
    out = pipe(prompt="a blue square", task="inpaint", images=[src], mask=Image.fromarray(m), seed=0).images[0]
    assert out.size == src.size
    assert np.array_equal(arr(out)[m == 0], arr(src)[m == 0])
    assert not np.array_equal(arr(out)[m > 0], arr(src)[m > 0])


def test_feather_is_zero_outside_and_one_deep_inside():
    m = np.zeros((32, 32), bool)
    m[8:24, 8:24] = True
    f = feather_mask(m, 3)
    assert f[~m].max() == 0.0
    assert f[14:18, 14:18].min() == 1.0
    assert 0 < f[8, 16] < 1


def test_transfer_detail_restores_the_source_only_where_nothing_changed():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 255, (32, 32, 3))
    recon = np.clip(src + rng.normal(0, 6, src.shape), 0, 255)  # the autoencoder's round trip
    out = recon.copy()
    out[8:20, 8:20] = 255 - out[8:20, 8:20]  # the edit changed this square a lot
    res = transfer_detail(src, recon, out, tolerance=0.25, grow_px=2)
    untouched = np.ones((32, 32), bool)
    untouched[4:24, 4:24] = False  # the square grown by the max filter (2 px) and the smoothing (2 px)
    assert np.allclose(res[untouched], src[untouched])  # unchanged: exactly the source
    assert np.allclose(res[10:18, 10:18], out[10:18, 10:18])  # changed: exactly the model's output
    assert np.abs(res - src)[untouched].max() < 1e-9 < np.abs(out - src)[untouched].max()


def test_edit_puts_back_source_detail_where_the_model_changed_nothing(pipe):
    src = rgb(11)
    kw = dict(prompt="make it blue", task="edit", images=[src], seed=2, steps=2)
    pipe.settings.detail_transfer = False
    try:
        plain = pipe(**kw).images[0]
    finally:
        pipe.settings.detail_transfer = True
    kept = pipe(**kw).images[0]
    with torch.no_grad():
        recon = tensor_to_images(pipe.autoencoder.decode(pipe.autoencoder.encode(images_to_tensor([src], "cpu"))))[0]
    expect = transfer_detail(arr(src).astype(np.float32), arr(recon).astype(np.float32),
                             arr(plain).astype(np.float32), pipe.settings.detail_tolerance)
    assert np.abs(arr(kept) - np.round(expect)).max() <= 1
    assert not np.array_equal(arr(kept), arr(plain))


def test_storyboard_panels_and_callback_previews(pipe):
    seen = []
    res = pipe(prompt="a fox: at the beach; in the snow; at night", task="storyboard", num_outputs=3, seed=0,
               height=64, width=64, steps=2, callback=lambda i, n, prev: seen.append((i, n, prev and prev.size)))
    assert len(res.images) == 3
    # a preview at every step but the last (its picture is the result, decoded right after)
    assert seen == [(1, 2, (64, 64)), (2, 2, None)]


def test_previews_every_so_many_seconds_skip_a_fast_generation(pipe, monkeypatch):
    """previews=<seconds>: at most one preview that often, the first that long in; a generation
    done sooner decodes none. A clock that jumps a second per step gives one at every step but the
    last; False gives none; a bad value is a sentence."""
    from seedling.model import pipeline as pl

    seen = []
    pipe(prompt="x", steps=4, height=64, width=64, seed=0, previews=60.0,
         callback=lambda i, n, prev: seen.append(prev is not None))
    assert seen == [False] * 4
    ticks = iter(range(1000))
    monkeypatch.setattr(pl.time, "perf_counter", lambda: float(next(ticks)))
    seen.clear()
    pipe(prompt="x", steps=4, height=64, width=64, seed=0, previews=0.5,
         callback=lambda i, n, prev: seen.append(prev is not None))
    assert seen == [True, True, True, False]
    monkeypatch.undo()
    seen.clear()
    pipe(prompt="x", steps=3, height=64, width=64, seed=0, previews=False,
         callback=lambda i, n, prev: seen.append(prev is not None))
    assert seen == [False] * 3
    with pytest.raises(ValueError, match="previews must be True, False or a number of seconds"):
        pipe(prompt="x", steps=1, height=64, width=64, previews=-1.0, callback=lambda *a: None)


def test_callback_can_cancel(pipe):
    with pytest.raises(GenerationCancelled):
        pipe(prompt="x", steps=4, height=64, width=64, callback=lambda i, n, p: i < 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="edit"), "takes exactly 1 input image"),
    (dict(task="compose", images=[rgb(i) for i in range(5)]), "1 to 4"),
    (dict(task="t2i", images=[rgb(0)]), "exactly 0"),
    (dict(task="inpaint", images=[rgb(0)]), "needs a mask"),
    (dict(task="inpaint", images=[rgb(0)], mask=Image.new("L", (32, 32))), "same size"),
    (dict(task="edit", images=[rgb(0)], mask=Image.new("L", (64, 64))), "only used by the 'inpaint'"),
    (dict(height=100), "multiple of 16"),
    (dict(width=0), "multiple of 16"),
    (dict(steps=0), "steps must be"),
    (dict(steps=2.5), "steps must be"),
    (dict(guidance=float("nan")), "guidance must be a finite"),
    (dict(image_guidance=-1.0), "image_guidance must be"),
    (dict(num_outputs=0), "num_outputs"),
    (dict(task="paint"), "unknown task"),
])
def test_bad_input_raises_readable_value_error(pipe, kwargs, match):
    kwargs = {"height": 64, "width": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe(prompt="a", **kwargs)


def test_save_load_roundtrip_gives_identical_images(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "m")
    p2 = SeedlingPipeline.from_pretrained(tmp_path / "m", text_encoder=pipe.text_encoder)
    for (k, a), (_, b) in zip(pipe.dit.state_dict().items(), p2.dit.state_dict().items()):
        assert torch.equal(a, b), k
    a = pipe(prompt="a cat", seed=5, height=64, width=64).images[0]
    b = p2(prompt="a cat", seed=5, height=64, width=64).images[0]
    assert np.array_equal(arr(a), arr(b))


def test_from_pretrained_missing_folder_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Seedling model folder"):
        SeedlingPipeline.from_pretrained(tmp_path)


def test_edit_defaults_to_source_size(pipe):
    res = pipe(prompt="make it red", task="edit", images=[rgb(1, (96, 48))], seed=0)
    assert res.images[0].size == (96, 48)


def test_guidance_branches_change_the_result(pipe):
    kw = dict(prompt="a cat", task="edit", images=[rgb(2)], seed=0, height=64, width=64)
    a = pipe(guidance=1.0, image_guidance=1.0, **kw).images[0]
    b = pipe(guidance=3.0, image_guidance=1.0, **kw).images[0]
    c = pipe(guidance=3.0, image_guidance=2.0, **kw).images[0]
    assert not np.array_equal(arr(a), arr(b)) and not np.array_equal(arr(b), arr(c))
    assert math.isfinite(float(arr(c).mean()))


@pytest.mark.parametrize("mode", ["int8", "w8a8"])
def test_quantized_pipeline_generates_close_to_fp32(mode):
    """quantize() replaces the DiT's linear layers, embedders included; generation must still run
    (regression: the DiT read .weight.dtype from layers that quantization replaces)."""
    p = SeedlingPipeline.from_config("tiny", seed=0)
    with torch.no_grad():
        for prm in p.dit.parameters():
            prm.add_(torch.randn_like(prm) * 0.05)
    kw = dict(prompt="a fox", task="compose", images=[rgb(1), rgb(2)], seed=0, height=64, width=64, steps=2)
    ref = arr(p(**kw).images[0]).astype(float)
    p.quantize(mode)
    out = arr(p(**kw).images[0]).astype(float)
    assert np.abs(out - ref).mean() < 8.0  # mean absolute pixel difference out of 255
    with pytest.raises(ValueError, match="already quantized"):
        p.quantize("w8a8" if mode == "int8" else "int8")


@pytest.mark.parametrize("use_ref_cache", [True, False])
@pytest.mark.parametrize("batch", [1, 2])
def test_batched_guidance_branches_equal_separate_branches(pipe, use_ref_cache, batch):
    """make_branches runs "cond" and "no_text" as one batch; the velocities must equal running each
    branch on its own (fp32, relative 1e-5), for every sample of the batch."""
    from seedling.model.sampler import euler_sample, make_schedule

    g = torch.Generator().manual_seed(0)
    C, L = pipe.dit.config.latent_channels, pipe.dit.config.text_len
    states, pooled = torch.randn(2, L, 384, generator=g), torch.randn(2, 384, generator=g)
    refs = [torch.randn(1, C, 8, 8, generator=g) for _ in range(2)]
    masks = [torch.zeros(1, 1, 8, 8) for _ in refs]
    x = torch.randn(batch, 1, C, 8, 8, generator=g)
    args = ("compose", states, pooled, refs, masks, batch, 3.0, 1.5, use_ref_cache)
    together = pipe.make_branches(*args, batch_branches=True)
    apart = pipe.make_branches(*args, batch_branches=False)
    assert [b.names for b in together] == [("cond", "no_text"), ("none",)]
    assert [b.names for b in apart] == [("cond",), ("no_text",), ("none",)]
    t, d = torch.full((batch,), 0.7), torch.full((batch,), 0.25)
    with torch.no_grad():
        va = {k: v for b in together for k, v in b(x, t, d).items()}
        vb = {k: v for b in apart for k, v in b(x, t, d).items()}
        assert set(va) == {"cond", "no_text", "none"} and not torch.equal(va["cond"], va["no_text"])
        for k in va:
            assert (va[k] - vb[k]).abs().max() <= 1e-5 * vb[k].abs().max()
        times = make_schedule(3)
        xa = euler_sample(together, x.clone(), times, 3.0, 1.5)
        xb = euler_sample(apart, x.clone(), times, 3.0, 1.5)
    assert (xa - xb).abs().max() <= 1e-5 * xb.abs().max()


@pytest.mark.parametrize("use_ref_cache", [True, False])
def test_reference_boxes_reach_the_model(pipe, use_ref_cache):
    refs = [rgb(i) for i in range(2)]
    kw = dict(prompt="the first on the left", task="compose", images=refs, seed=2, height=64, width=64, steps=2,
              use_ref_cache=use_ref_cache)
    free = arr(pipe(**kw).images[0])
    assert np.array_equal(free, arr(pipe(boxes=[None, None], **kw).images[0]))  # None = free, as without boxes
    assert np.array_equal(free, arr(pipe(boxes=[(0, 0, 1, 1)] * 2, **kw).images[0]))  # full frame = today's
    halves = arr(pipe(boxes=[(0, 0, 0.5, 1), (0.5, 0, 1, 1)], **kw).images[0])
    assert not np.array_equal(free, halves)
    swapped = arr(pipe(boxes=[(0.5, 0, 1, 1), (0, 0, 0.5, 1)], **kw).images[0])
    assert not np.array_equal(halves, swapped)


def test_reference_boxes_cached_equals_uncached(pipe):
    kw = dict(prompt="two things", task="compose", images=[rgb(5), rgb(6)], seed=4, height=64, width=64, steps=3,
              guidance=2.0, boxes=[(0, 0.25, 0.5, 0.75), (0.5, 0.25, 1, 0.75)])
    a, b = pipe(use_ref_cache=True, **kw).images[0], pipe(use_ref_cache=False, **kw).images[0]
    assert np.abs(arr(a) - arr(b)).max() <= 1


@pytest.mark.parametrize("boxes, match", [([(0, 0, 1, 1)], "one box"), ([(0, 0, 2, 1), None], "fractions")])
def test_bad_boxes_are_sentences(pipe, boxes, match):
    with pytest.raises(ValueError, match=match):
        pipe(prompt="x", task="compose", images=[rgb(1), rgb(2)], height=64, width=64, steps=1, boxes=boxes)


def test_control_tasks_take_their_picture_at_the_output_size(pipe):
    """edges/sketch/colourise/upscale: one control picture, resized to the output (bicubic for an
    upscale's small picture, as in training), turned gray for colourise; edges keep the source size."""
    from seedling.model.pipeline import control_input

    small = rgb(3, (16, 16))
    up = control_input("upscale", small, 64, 64)
    assert up.size == (64, 64) and np.array_equal(np.asarray(up), np.asarray(small.resize((64, 64), Image.BICUBIC)))
    gray = np.asarray(control_input("colourise", rgb(4), 64, 64))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert control_input("edges", rgb(5), 64, 64).size == (64, 64)
    res = pipe(prompt="a fox", task="edges", images=[rgb(6, (64, 48))], steps=2, seed=0)
    assert res.images[0].size == (64, 48)  # keeps the control's size
    res = pipe(prompt="", task="upscale", images=[small], steps=2, seed=0, height=64, width=64)
    assert res.images[0].size == (64, 64) and res.parameters["input_kept"] is False


def test_an_upscale_keeps_its_small_input_when_the_config_says_so(pipe, monkeypatch):
    """upscale_keeps_input: the output, area-averaged down to the small input's size, is near the
    small input (back-projection after the model), and nearer than the model's own output; an
    input as large as the output has no small picture to keep."""
    small = rgb(3, (16, 16))
    own = np.asarray(pipe(prompt="", task="upscale", images=[small], steps=2, seed=0, height=64, width=64).images[0])
    monkeypatch.setattr(pipe.settings, "upscale_keeps_input", True)
    res = pipe(prompt="", task="upscale", images=[small], steps=2, seed=0, height=64, width=64)
    kept = np.asarray(res.images[0])
    assert res.parameters["input_kept"] is True

    def off(x):  # mean distance of the 4x4 block means from the small input
        return np.abs(x.astype(np.float32).reshape(16, 4, 16, 4, 3).mean((1, 3)) - np.asarray(small, np.float32)).mean()

    assert off(kept) < 0.3 * off(own), (off(kept), off(own))
    same = pipe(prompt="", task="upscale", images=[small.resize((64, 64))], steps=2, seed=0, height=64, width=64)
    assert same.parameters["input_kept"] is False


def test_a_task_the_model_was_not_trained_for_is_a_sentence(pipe):
    from dataclasses import replace

    from seedling.model.dit import UnifiedDiT

    six = UnifiedDiT(replace(pipe.dit.dims, tasks=pipe.dit.dims.tasks[:6], num_tasks=8))
    old = SeedlingPipeline(six, pipe.autoencoder, pipe.text_encoder)
    with pytest.raises(ValueError, match="this model was not trained for the 'sketch' task"):
        old(prompt="a fox", task="sketch", images=[rgb(0)], height=64, width=64, steps=1)


def test_t2i_prompts_are_expanded_when_the_config_says_so(pipe, monkeypatch):
    """`expand_prompts: ["t2i"]` (pipeline.json) runs a t2i prompt through the grounded expander
    first and says so in the parameters; `expand_prompt=False` runs it as typed; a prompt the
    expander cannot ground runs as typed; other tasks refuse with a sentence."""
    from seedling.model.pipeline import PipelineConfig
    from seedling.model.prompt_expansion.grounded import GroundedExpander

    monkeypatch.setattr(pipe, "_expander", GroundedExpander())  # MiniLM: the tiny encoder grounds nothing
    monkeypatch.setattr(pipe.settings, "expand_prompts", ["t2i"])
    typed = "could you draw a fox for me"
    out = pipe(typed, seed=1, height=64, width=64)
    assert (out.parameters["prompt"], out.parameters["typed_prompt"]) == ("a fox", typed)
    assert out.parameters["prompt_expansion"]["grounded"] is True
    ran = pipe("a fox", seed=1, height=64, width=64, expand_prompt=False)
    assert np.array_equal(arr(out.images[0]), arr(ran.images[0]))  # what ran is the expanded prompt
    raw = pipe(typed, seed=1, height=64, width=64, expand_prompt=False)
    assert raw.parameters["prompt"] == typed and "typed_prompt" not in raw.parameters
    lost = "quantum entanglement of the vacuum"
    kept = pipe(lost, seed=1, height=64, width=64)
    assert kept.parameters["prompt"] == lost and kept.parameters["prompt_expansion"]["grounded"] is False
    with pytest.raises(ValueError, match="expand_prompt is for"):
        pipe("make it red", task="edit", images=[rgb(0)], expand_prompt=True)
    with pytest.raises(ValueError, match="expand_prompts names the task 'edit'"):
        PipelineConfig(expand_prompts=["edit"])
