"""Invariants of the generated training data (model/data/knowledge.py, captions.py, tasks.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from seedling.model.data import knowledge as kn
from seedling.model.data.icons import load_icons
from seedling.model.data.tasks import EDIT_KINDS, LAYOUTS, STYLES, TASKS, Sample, TaskSampler

N_REFS_OUTPUTS = {  # task -> (allowed ref counts, allowed output counts)
    "t2i": ({0}, {1}),
    "edit": ({1}, {1}),
    "inpaint": ({1}, {1}),
    "compose": ({2, 3, 4}, {1}),
    "storyboard": ({0}, {2, 3, 4}),
    "style": ({1}, {1}),
    **{task: ({1}, {1}) for task in ("edges", "sketch", "colourise", "upscale", "text")},
}


@pytest.fixture(scope="module")
def icons():
    return load_icons()


@pytest.fixture(scope="module")
def sampler(icons):
    return TaskSampler(icons, seed=0)


def _same(a: Sample, b: Sample) -> bool:
    return (
        a.task == b.task
        and a.prompt == b.prompt
        and len(a.refs) == len(b.refs)
        and all(np.array_equal(x, y) for x, y in zip(a.refs, b.refs))
        and len(a.outputs) == len(b.outputs)
        and all(np.array_equal(x, y) for x, y in zip(a.outputs, b.outputs))
        and ((a.mask is None and b.mask is None) or np.array_equal(a.mask, b.mask))
    )


# -- determinism --------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_samples(icons, task):
    a, b = TaskSampler(icons, seed=3), TaskSampler(icons, seed=3)
    for _ in range(5):
        assert _same(a.sample(task), b.sample(task))
    ra, rb = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(5):
        assert _same(a.sample(task, ra), b.sample(task, rb))


def test_different_seeds_differ(icons):
    a, b = TaskSampler(icons, seed=1), TaskSampler(icons, seed=2)
    assert [a.sample("t2i").prompt for _ in range(8)] != [b.sample("t2i").prompt for _ in range(8)]


# -- shapes of every task -----------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_sample_shapes(sampler, task):
    rng = np.random.default_rng(0)
    refs_ok, outs_ok = N_REFS_OUTPUTS[task]
    for _ in range(30):
        s = sampler.sample(task, rng)
        assert s.task == task and (s.prompt or task == "upscale")
        assert len(s.refs) in refs_ok and len(s.outputs) in outs_ok
        for im in s.refs + s.outputs:
            assert im.shape == (128, 128, 3) and im.dtype == np.uint8
        if task == "inpaint":
            assert s.mask.shape == (128, 128) and s.mask.dtype == np.uint8
            assert set(np.unique(s.mask)) <= {0, 255} and s.mask.any()
        else:
            assert s.mask is None


def test_every_image_yields_a_sample_of_each_control_task(sampler):
    """The control is made from the target by controls.CONTROLS (deterministic); the prompt is the
    t2i caption (an upscale's is empty half the time); an upscale says its factor and small image."""
    from seedling.model.data import controls as ctl

    rng = np.random.default_rng(5)
    for task, kind in (("edges", "edges"), ("sketch", "sketch"), ("colourise", "colourise")):
        source = sampler.t2i(rng)
        s = getattr(sampler, task)(rng, source)
        assert s.prompt == source.prompt and s.meta["control"] == kind
        assert np.array_equal(s.refs[0], ctl.CONTROLS[kind](source.outputs[0]))
        assert np.array_equal(s.outputs[0], source.outputs[0])
    ups = [sampler.upscale(rng) for _ in range(40)]
    assert {u.meta["factor"] for u in ups} == {2, 4}
    assert 5 < sum(u.prompt == "" for u in ups) < 35
    for u in ups[:6]:
        f = u.meta["factor"]
        assert u.meta["small"].shape == (128 // f, 128 // f, 3)
        assert np.array_equal(u.refs[0], ctl.upsample_bicubic(u.meta["small"], (128, 128)))
    with pytest.raises(ValueError, match="factors"):
        sampler.upscale(rng, factor=3)


def test_storyboard_panel_count_parameter(icons):
    s = TaskSampler(icons, seed=0, max_panels=6)
    counts = {len(s.sample("storyboard").outputs) for _ in range(60)}
    assert counts == {2, 3, 4, 5, 6}
    with pytest.raises(ValueError):
        TaskSampler(icons, seed=0, max_panels=7)


def test_t2i_mix_weights(icons):
    only_words = TaskSampler(icons, seed=0, t2i_mix={"word": 1.0})
    assert {only_words.sample("t2i").meta["kind"] for _ in range(20)} == {"word"}
    mixed = TaskSampler(icons, seed=0)
    kinds = [mixed.sample("t2i").meta["kind"] for _ in range(400)]
    assert 0.4 < kinds.count("icon") / 400 < 0.6 and kinds.count("chart") > 10
    with pytest.raises(ValueError):
        TaskSampler(icons, seed=0, t2i_mix={"video": 1.0})


def test_unknown_task_is_an_error(sampler):
    with pytest.raises(ValueError, match="unknown task"):
        sampler.sample("outpaint")


# -- edits and masks ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", EDIT_KINDS)
@pytest.mark.parametrize("size, cases", [(128, 40), (512, 6)])
def test_edit_changes_only_the_region(sampler, sampler_512, kind, size, cases):
    rng = np.random.default_rng(1)
    for _ in range(cases):
        s = (sampler if size == 128 else sampler_512).edit(rng, kind)
        src, tgt, region = s.refs[0], s.outputs[0], s.meta["region"]
        assert region.shape == (size, size) and region.dtype == bool
        changed = (src != tgt).any(-1)
        assert changed.any(), f"{kind}: the edit changed nothing ({s.prompt!r})"
        assert not (changed & ~region).any(), f"{kind}: pixels outside the region changed ({s.prompt!r})"
        assert region.mean() < 0.6 or kind == "background"


def test_edit_prompts_name_the_change(sampler):
    rng = np.random.default_rng(2)
    for _ in range(30):
        s = sampler.edit(rng, "recolor")
        src, tgt = s.meta["source"], s.meta["target"]
        (cell,) = [o.cell for o in src.objects if tgt.object_at(o.cell).color != o.color]
        assert f"{src.object_at(cell).color} {src.object_at(cell).shape}" in s.prompt
        assert s.prompt.rstrip().endswith(tgt.object_at(cell).color)
        s = sampler.edit(rng, "word")
        assert f'"{s.meta["target"].text}"' in s.prompt
        s = sampler.edit(rng, "background")
        assert s.meta["target_background"] in s.prompt


def test_inpaint_changes_only_inside_the_mask(sampler):
    rng = np.random.default_rng(3)
    kinds = set()
    for _ in range(60):
        s = sampler.inpaint(rng)
        kinds.add(s.meta["kind"])
        inside = s.mask == 255
        changed = (s.refs[0] != s.outputs[0]).any(-1)
        assert changed.any() and not (changed & ~inside).any()
        assert np.array_equal(inside, s.meta["region"])
        new = s.meta["target"].object_at(s.meta["cell"])
        assert new.color in s.prompt and new.shape in s.prompt
    assert kinds == {"cell", "blob"}


# -- knowledge images ---------------------------------------------------------------------------


@pytest.mark.parametrize("cell", kn.CELLS)
def test_objects_stay_inside_their_cell(cell):
    x0, y0, x1, y1 = kn.cell_box(cell)
    rng = np.random.default_rng(0)
    for _ in range(200):
        o = kn.random_object(rng, cell)
        bx0, by0, bx1, by1 = o.box()
        assert x0 <= bx0 and bx1 < x1 and y0 <= by0 and by1 < y1
        assert 30 <= o.size <= 36


def test_scene_pixels_are_exact_palette_colours():
    rng = np.random.default_rng(4)
    allowed = {kn.WHITE, *kn.PALETTE.values()}
    for _ in range(20):
        img = kn.render_scene(kn.random_scene(rng))
        assert {tuple(p) for p in np.unique(img.reshape(-1, 3), axis=0)} <= allowed


def test_scene_caption_mentions_every_object():
    rng = np.random.default_rng(5)
    from seedling.model.data.captions import scene_caption

    for _ in range(50):
        scene = kn.random_scene(rng)
        text = scene_caption(scene, rng)
        for o in scene.objects:
            assert o.color in text and o.shape in text


@pytest.mark.parametrize("text", ["HELLO", "ELEPHANT", "Window", "MMMMMM"])
def test_words_are_large_and_fit(text):
    for font in kn.available_fonts():
        spec = kn.WordSpec(text, font=font, cap_height=36)
        x0, y0, x1, y1 = kn.word_box(spec)
        assert y1 - y0 >= kn.MIN_CAP_HEIGHT  # all caps or an ascender: ink height >= cap height
        assert 0 <= x0 and x1 <= 128 and x1 - x0 <= kn.MAX_TEXT_WIDTH
        img = kn.render_word(spec)
        ink = (img < 200).any(-1)
        assert ink[y0:y1, x0:x1].any() and not ink[:, :x0].any() and not ink[:, x1:].any()


def test_word_list_is_short_words():
    assert len(kn.WORDS) >= 300 and len(set(kn.WORDS)) == len(kn.WORDS)
    assert all(w.isalpha() and w.islower() and len(w) <= 8 for w in kn.WORDS)


def test_chart_bars_match_values():
    rng = np.random.default_rng(6)
    for _ in range(30):
        spec = kn.random_chart(rng)
        assert 2 <= len(spec.values) <= 5 and all(1 <= v <= 9 for v in spec.values)
        img = kn.render_chart(spec)
        for (x0, y0, x1, y1), v, c in zip(kn.bar_boxes(spec), spec.values, spec.colors):
            assert y1 - y0 + 1 == v * kn.CHART_UNIT
            assert tuple(img[(y0 + y1) // 2, (x0 + x1) // 2]) == kn.PALETTE[c]
            assert tuple(img[y0 - 1, (x0 + x1) // 2]) == kn.WHITE


# -- compose, storyboard, style -----------------------------------------------------------------


def test_compose_layout(sampler):
    rng = np.random.default_rng(7)
    for _ in range(40):
        s = sampler.compose(rng)
        n = len(s.refs)
        boxes, _ = LAYOUTS[s.meta["layout"]]
        assert len(s.meta["slots"]) == n == len(boxes) == len(set(s.meta["names"]))
        assert sorted(r for r, _ in s.meta["slots"]) == list(range(n))  # each reference placed once
        for _, (x0, y0, x1, y1) in s.meta["slots"]:
            assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and x1 - x0 == y1 - y0
            assert (s.outputs[0][y0:y1, x0:x1] < 200).any()  # something is drawn in every slot
    with pytest.raises(ValueError):
        sampler.compose(rng, n_refs=5)


def test_compose_prompt_follows_the_slots(sampler):
    rng = np.random.default_rng(8)
    s = sampler.compose(rng, n_refs=2, phrasing=0)
    left = s.meta["names"][s.meta["slots"][0][0]]
    assert s.prompt.startswith(f"the {left} on the left") or s.prompt.startswith("the flag of")


def test_storyboard_scenes_change(sampler):
    rng = np.random.default_rng(9)
    for _ in range(30):
        s = sampler.storyboard(rng)
        panels = s.meta["panels"]
        assert len(panels) == len(s.outputs)
        for a, b in itertools.pairwise(panels):
            assert a["background"] != b["background"]
        for p, img in zip(panels, s.outputs):
            assert p["background"] in s.prompt
            assert tuple(img[0, 0]) == kn.BACKGROUNDS[p["background"]] or p["position"] != "center"


def test_style_pairs_share_the_style(sampler):
    rng = np.random.default_rng(10)
    seen = set()
    for _ in range(60):
        s = sampler.style(rng)
        seen.add(s.meta["style"])
        assert s.meta["content"] != s.meta["ref_content"]
        assert not np.array_equal(s.refs[0], s.outputs[0])
        if s.meta["style"] == "grayscale":
            for im in (s.refs[0], s.outputs[0]):
                assert (im[..., 0] == im[..., 1]).all() and (im[..., 1] == im[..., 2]).all()
    assert seen == set(STYLES)


# -- native sizes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sampler_512(icons):
    return TaskSampler(icons, seed=0, size=512)


def _area_down(x: np.ndarray, k: int) -> np.ndarray:
    h, w = x.shape[:2]
    return x.reshape(h // k, k, w // k, k, -1).astype(float).mean((1, 3))


@pytest.mark.parametrize("task", TASKS)
def test_a_512_sample_is_the_128_sample_drawn_natively(icons, task):
    """The same random draws give the same prompt and the same picture: the 512 px sample,
    averaged down to 128, lies close to the 128 px one (it is drawn, not upscaled: icons from the
    vector font, shapes and words on the larger canvas)."""
    small, big = TaskSampler(icons, seed=4, storyboard_panels=True), TaskSampler(icons, seed=4, size=512,
                                                                                 storyboard_panels=True)
    for _ in range(4):
        a, b = small.sample(task), big.sample(task)
        assert a.prompt == b.prompt and len(a.refs) == len(b.refs) and len(a.outputs) == len(b.outputs)
        # an upscale control is the picture at 1/factor of the size asked for: 128 px from 512
        refs = (a.refs, b.refs) if task != "upscale" else ([], [])
        if task == "upscale":
            assert b.meta["small"].shape == (512 // a.meta["factor"],) * 2 + (3,)
        for x, y in zip(a.outputs + refs[0], b.outputs + refs[1]):
            assert y.shape == (512, 512, 3) and y.dtype == np.uint8
            # edge maps stay 1 px at 512 (Canny at the picture's resolution): averaged they are fainter
            limit = 30 if task == "edges" else 16
            assert np.abs(_area_down(y, 4) - x).mean() < limit, (task, a.prompt)
        if a.mask is not None:
            assert b.mask.shape == (512, 512)
        for (ra, box_a), (rb, box_b) in zip(a.meta.get("slots", []), b.meta.get("slots", [])):
            assert ra == rb and tuple(4 * v for v in box_a) == tuple(box_b)


def test_inpaint_at_512_changes_only_inside_the_mask(sampler_512):
    rng = np.random.default_rng(3)
    for _ in range(10):
        s = sampler_512.inpaint(rng)
        changed = (s.refs[0] != s.outputs[0]).any(-1)
        assert changed.any() and not (changed & ~(s.mask == 255)).any()


def test_icons_at_512_are_drawn_not_upscaled(icons):
    """A 512 px icon sample has far more fine detail (gradient energy) than its 128 px picture
    upscaled: it is rasterised from the vector font."""
    from PIL import Image

    def gradient_energy(a):
        g = a.astype(np.float32).mean(-1)
        return float((np.diff(g, axis=0) ** 2).mean() + (np.diff(g, axis=1) ** 2).mean())

    small, big = (TaskSampler(icons, seed=0, size=n).t2i_icon(np.random.default_rng(5)) for n in (128, 512))
    upscaled = np.asarray(Image.fromarray(small.outputs[0]).resize((512, 512), Image.BICUBIC))
    assert big.meta["name"] == small.meta["name"]
    assert gradient_energy(big.outputs[0]) > 1.5 * gradient_energy(upscaled)


@pytest.mark.parametrize("size", [64, 200, 500])
def test_sizes_that_are_no_multiple_of_128_are_refused(icons, size):
    with pytest.raises(ValueError, match="multiple"):
        TaskSampler(icons, seed=0, size=size)
