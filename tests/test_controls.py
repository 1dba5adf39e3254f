"""Control inputs (model/data/controls.py), their judges (eval/control_detectors.py) and the
control suites (eval/control_suites.py), on synthetic pairs and on ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from seedling.model.data import controls as ctl
from seedling.model.data import tasks as tk
from seedling.model.data.icons import load_icons
from seedling.model.data.styles import composite
from seedling.model.eval import control_detectors as cdet
from seedling.model.eval import control_suites as cs
from seedling.model.eval import generators as gn
from seedling.model.eval import harness as hs


def _square(size=64, box=(16, 16, 48, 48), color=(200, 30, 30), bg=(255, 255, 255)) -> np.ndarray:
    x = np.empty((size, size, 3), np.uint8)
    x[:] = bg
    x0, y0, x1, y1 = box
    x[y0:y1, x0:x1] = color
    return x


def _border(box, size) -> np.ndarray:
    """(size, size) bool: the pixels just inside and just outside the square's boundary."""
    x0, y0, x1, y1 = box
    inner = np.zeros((size, size), bool)
    inner[y0:y1, x0:x1] = True
    ring = np.zeros_like(inner)
    ring[y0 - 1 : y1 + 1, x0 - 1 : x1 + 1] = True
    shrunk = np.zeros_like(inner)
    shrunk[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = True
    return ring & ~shrunk


@pytest.fixture(scope="module")
def icons():
    return load_icons()


@pytest.fixture(scope="module")
def icon_images(icons):
    by = {i.name: i for i in icons}
    return [composite(by[n].rgba) for n in ("fox", "red apple", "canada", "grinning face", "house")]


# -- controls -------------------------------------------------------------------------------------


def test_edges_of_a_square_are_its_border():
    box, size = (16, 20, 44, 50), 64
    e = ctl.canny(_square(size, box))
    border = _border(box, size)
    assert e.any()
    assert not (e & ~border).any()  # no edge away from the boundary
    # every side is found: each boundary row/column segment is touched along its whole length
    x0, y0, x1, y1 = box
    assert e[y0 - 1 : y0 + 1, x0:x1].any(axis=0).all() and e[y1 - 1 : y1 + 1, x0:x1].any(axis=0).all()
    assert e[y0:y1, x0 - 1 : x0 + 1].any(axis=1).all() and e[y0:y1, x1 - 1 : x1 + 1].any(axis=1).all()
    # thin: about one pixel across each side (4 sides of ~30 px)
    assert e.sum() < 2.5 * 2 * ((x1 - x0) + (y1 - y0))


def test_flat_and_faint_images_have_no_edges():
    assert not ctl.canny(np.full((32, 32, 3), 120, np.uint8)).any()
    faint = _square(color=(250, 250, 250))  # 5 grey levels: below the low threshold
    assert not ctl.canny(faint).any()
    with pytest.raises(ValueError):
        ctl.canny(_square(), low=10, high=5)


@pytest.mark.parametrize("kind", list(ctl.CONTROLS))
def test_controls_are_deterministic_and_keep_the_size(kind, icon_images):
    for im in icon_images + [_square(96)]:
        a, b = ctl.CONTROLS[kind](im), ctl.CONTROLS[kind](im.copy())
        assert a.shape == im.shape and a.dtype == np.uint8
        assert np.array_equal(a, b)


def test_controls_reject_other_inputs():
    with pytest.raises(ValueError):
        ctl.edges_control(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError):
        ctl.downsample(np.zeros((30, 32, 3), np.uint8), 4)


def test_grayscale_matches_pillow_luma(icon_images):
    for im in icon_images:
        g = ctl.grayscale_control(im)
        assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
        pil = np.asarray(Image.fromarray(im).convert("L")).astype(int)
        assert np.abs(g[..., 0].astype(int) - pil).max() <= 1


def test_low_resolution_is_block_averages():
    rng = np.random.default_rng(0)
    im = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    small = ctl.downsample(im, 4)
    assert small.shape == (16, 8, 3)
    want = im.reshape(16, 4, 8, 4, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(small - want).max() <= 1
    ctl_im = ctl.low_resolution_control(im, 2)
    assert ctl_im.shape == im.shape
    flat = np.full((64, 64, 3), 77, np.uint8)  # nothing to lose: the round trip is exact
    assert np.array_equal(ctl.low_resolution_control(flat, 4), flat)


def test_sketch_draws_dark_strokes_on_the_border_only():
    box, size = (16, 16, 48, 48), 64
    sk = ctl.sketch_control(_square(size, box, color=(0, 0, 0)))
    lines = cdet.sketch_lines(sk)
    assert lines.any()
    near = np.zeros((size, size), bool)
    near[13:51, 13:51] = True
    near[19:45, 19:45] = False  # within 3 px of the boundary
    assert not (lines & ~near).any()
    assert (sk[0, 0] == 255).all() and (sk[32, 32] == 255).all()  # paper stays white


# -- judges ---------------------------------------------------------------------------------------


def test_line_agreement_on_synthetic_maps():
    a = np.zeros((40, 40), bool)
    a[10, 5:35] = True
    assert cdet.line_agreement(a, a)["f1"] == 1.0
    shifted = np.roll(a, 1, axis=0)  # one pixel off: within the 2 px tolerance
    assert cdet.line_agreement(shifted, a)["f1"] == 1.0
    assert cdet.line_agreement(shifted, a, tol=0)["f1"] == 0.0
    far = np.roll(a, 15, axis=0)
    r = cdet.line_agreement(far, a)
    assert r["f1"] == 0.0 and r["iou"] == 0.0
    half = a.copy()
    half[10, 20:35] = False  # half the line: all of it right, half of the control found
    r = cdet.line_agreement(half, a)
    assert r["precision"] == 1.0 and 0.45 < r["recall"] < 0.6
    empty = np.zeros_like(a)
    assert cdet.line_agreement(empty, empty)["f1"] == 1.0 and cdet.line_agreement(empty, a)["f1"] == 0.0


def test_edge_and_sketch_agreement_follow_the_geometry():
    box = (16, 16, 48, 48)
    sq = _square(64, box)
    edges, sketch = ctl.edges_control(sq), ctl.sketch_control(sq)
    assert cdet.edge_agreement(sq, edges)["f1"] == 1.0
    same_shape_other_colour = _square(64, box, color=(20, 90, 200))
    assert cdet.edge_agreement(same_shape_other_colour, edges)["f1"] > 0.95
    moved = _square(64, (4, 4, 36, 36))
    assert cdet.edge_agreement(moved, edges)["f1"] < 0.5
    assert cdet.sketch_agreement(sq, sketch)["f1"] == 1.0
    assert cdet.sketch_agreement(moved, sketch)["f1"] < 0.5


def test_colourise_judges(icon_images):
    fox = icon_images[0]
    gray = ctl.grayscale_control(fox)
    assert cdet.gray_psnr(fox, gray) > 45  # the colour image has the control's luminance
    assert cdet.colorfulness(gray) == 0.0 and cdet.colorfulness(fox) > 30
    wrong = ctl.grayscale_control(icon_images[1])  # another icon's shading
    assert cdet.gray_psnr(fox, wrong) < 20


def test_upscale_gain_over_bicubic(icon_images):
    truth = icon_images[0]
    small = ctl.downsample(truth, 4)
    bicubic = ctl.upsample_bicubic(small, (128, 128))
    assert cdet.psnr_over_bicubic(bicubic, small, truth) == 0.0
    nearest = np.asarray(Image.fromarray(small).resize((128, 128), Image.NEAREST))
    assert cdet.psnr_over_bicubic(nearest, small, truth) < 0  # blockier than bicubic
    assert cdet.psnr_over_bicubic(truth, small, truth) > 10


def test_keeping_the_small_input_gives_it_back_and_beats_bicubic(icon_images):
    """`keep_low_resolution` (the pipeline's upscale_keeps_input): any upscaled picture, area-
    averaged down, comes back close to the small input; applied to the bicubic upsampling itself it
    gains on bicubic (back-projection alone, with no model); a small picture of the wrong size is
    a sentence."""
    from seedling.model.postprocess import keep_low_resolution

    gains = []
    for truth in icon_images:
        small = ctl.downsample(truth, 4)
        bicubic = ctl.upsample_bicubic(small, (128, 128)).astype(np.float32)
        kept = keep_low_resolution(small.astype(np.float32), bicubic, 4)
        back = kept.reshape(32, 4, 32, 4, 3).mean((1, 3))
        assert np.abs(back - small).mean() < 0.25 * np.abs(bicubic.reshape(32, 4, 32, 4, 3).mean((1, 3)) - small).mean()
        gains.append(cdet.psnr_over_bicubic(np.round(kept).astype(np.uint8), small, truth))
    assert np.mean(gains) > 0.5, gains
    with pytest.raises(ValueError, match="is not the small picture"):
        keep_low_resolution(np.zeros((30, 32, 3), np.float32), bicubic, 4)


# -- suites ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ctx(icons):
    return hs.EvalContext.build(icons, hs.EvalConfig(n_icons=40))


def test_control_suites_run_after_the_harness_and_only_for_models_with_their_tasks(icons):
    """seedling-eval runs the control suites after the harness's own; a model that lacks a suite's
    task has it skipped with that reason instead of failing the run."""
    from seedling.model.eval.run import ALL_SUITES

    assert list(ALL_SUITES)[: len(hs.SUITES)] == list(hs.SUITES) and set(cs.CONTROL_SUITES) <= set(ALL_SUITES)
    assert [t for t, _ in cs.CONTROL_TASKS.values()] == ["edges", "sketch", "colourise", "upscale"]
    assert [s.task for s in cs.CONTROL_SUITES.values()] == ["edges", "sketch", "colourise", "upscale", "upscale"]

    oracle = gn.OracleGenerator()
    oracle.tasks = ("t2i", "edges")  # as PipelineGenerator says for a model trained with edges only
    cfg = hs.EvalConfig(n_icons=8, suites=("control_edges", "control_sketch"))
    result = hs.evaluate(icons, oracle, cfg, registry=ALL_SUITES)
    assert list(result.metrics["suites"]) == ["control_edges"]
    assert result.metrics["suites"]["control_edges"]["success"] == 1.0
    assert result.metrics["skipped"] == {"control_sketch": "the model was not trained for the 'sketch' task"}


@pytest.mark.parametrize("name", list(cs.CONTROL_SUITES))
def test_oracle_scores_every_control_suite(ctx, name):
    res = hs.run_suite(ctx, cs.CONTROL_SUITES[name], gn.OracleGenerator())
    m = hs.aggregate(res)
    if name == "control_upscale_512":  # judged at 512 px, by PSNR alone (no icon to retrieve in a chart)
        assert m["n"] == cs.N_LARGE and res[0].outputs[0].shape == (512, 512, 3)
        assert {r.sample.meta["content"] for r in res} == {"icon", "shapes", "word", "chart"}
        # back-projection alone (no model) gains on bicubic; the truth gains far more
        assert 0.5 < m["backprojection_over_bicubic"] < 5 and m["psnr_over_bicubic"] > 20
        return
    assert m["n"] == 40 and m["top1"] == 1.0
    primary = cs.CONTROL_SUITES[name].primary
    assert m[primary] == 1.0
    if "line_f1" in m:
        assert m["line_f1"] == 1.0
    if name == "control_upscale_4x":
        assert m["psnr_over_bicubic"] > 10


@pytest.mark.parametrize("name", list(cs.CONTROL_SUITES))
def test_returning_the_control_fails(ctx, name):
    """A model that copies its control input back scores badly on every control suite."""

    def copy_control(sample, seed):  # an upscale's input is the small picture: its control is its bicubic upsampling
        if sample.task == "upscale":
            return [ctl.upsample_bicubic(sample.refs[0], sample.outputs[0].shape[1::-1])]
        return [sample.refs[0].copy()]

    res = hs.run_suite(ctx, cs.CONTROL_SUITES[name], copy_control)
    if name in ("control_upscale_4x", "control_upscale_512"):
        assert abs(hs.aggregate(res)["psnr_over_bicubic"]) < 1e-9  # the control is the bicubic upsampling
        return
    passed = [r for r in res if r.scores["success"]]
    assert len(passed) <= 0.15 * len(res)
    # only icons with (almost) no colour, whose gray or line picture is nearly the icon itself
    assert all(cdet.colorfulness(r.sample.outputs[0]) < 10 for r in passed)


def test_control_cases_are_deterministic(ctx):
    suite = cs.CONTROL_SUITES["control_edges"]
    a = hs.run_suite(ctx, suite, gn.OracleGenerator())
    b = hs.run_suite(ctx, suite, gn.OracleGenerator())
    assert [r.sample.prompt for r in a] == [r.sample.prompt for r in b]
    assert all(np.array_equal(x.sample.refs[0], y.sample.refs[0]) for x, y in zip(a, b))
    assert a[0].sample.prompt and a[0].sample.task == "edges"


def test_drawn_square_control_pair_roundtrip():
    """The pipeline a control suite runs, end to end on a drawn picture: a square drawn a little
    off its control still agrees, a circle in its place does not."""
    box = (20, 20, 44, 44)
    control = ctl.edges_control(_square(64, box))
    im = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(im).rectangle((21, 20, 44, 43), fill=(0, 120, 0))
    assert cdet.edge_agreement(np.asarray(im), control)["f1"] > 0.9
    circle = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(circle).ellipse((20, 20, 43, 43), fill=(0, 120, 0))
    assert cdet.edge_agreement(np.asarray(circle), control)["f1"] < 0.9


def test_the_model_sees_edges_dark_on_white_and_every_other_control_as_given(icon_images):
    """`model_view`: an edge map (white on black) is inverted for the model, in training
    (`stack_samples`) and in sampling (`control_input`) alike; sketch, gray and low-resolution
    controls pass unchanged."""
    from seedling.model import train_data
    from seedling.model.data import tasks as tk
    from seedling.model.pipeline import control_input

    edges = ctl.edges_control(icon_images[0])
    assert np.array_equal(ctl.model_view("edges", edges), 255 - edges)
    for kind in ("sketch", "colourise", "upscale_2x"):
        c = ctl.CONTROLS[kind](icon_images[0])
        assert np.array_equal(ctl.model_view(kind.split("_")[0], c), c)
    sampled = np.asarray(control_input("edges", Image.fromarray(edges), 128, 128))
    assert np.array_equal(sampled, 255 - edges)
    samples = [tk.Sample("edges", "a fox", [edges], None, [icon_images[0]], {}),
               tk.Sample("edges", "a fox", [edges], None, [icon_images[0]], {})]
    assert np.array_equal(train_data.stack_samples(samples)["refs"][1, 0], 255 - edges)
    sketch = [tk.Sample("sketch", "a fox", [ctl.sketch_control(icon_images[0])], None, [icon_images[0]], {})]
    assert np.array_equal(train_data.stack_samples(sketch)["refs"][0, 0], sketch[0].refs[0])


def test_the_autoencoder_keeps_edges_dark_on_white_not_white_on_black(icon_images):
    """Why `model_view` inverts edge maps: through the shipped autoencoder's round trip, dark
    1 px lines on white survive (line F1 within 1 px over 0.9) and white lines on black mostly do
    not (under 0.6)."""
    import torch

    from seedling.model.autoencoder import Autoencoder, images_to_tensor, tensor_to_images

    ae = Autoencoder.from_pretrained("assets/default/autoencoder").eval()

    def round_trip(x):
        with torch.no_grad():
            return np.asarray(tensor_to_images(ae.decode(ae.encode(images_to_tensor([x]))))[0])

    dark, light = [], []
    for im in icon_images:
        e = ctl.edges_control(im)
        want = e[..., 0] > 127
        light.append(cdet.line_agreement(round_trip(e)[..., 0] > 127, want, 1)["f1"])
        dark.append(cdet.line_agreement(round_trip(ctl.model_view("edges", e))[..., 0] < 128, want, 1)["f1"])
    assert np.mean(dark) > 0.9 and np.mean(light) < 0.6, (dark, light)


def test_the_pipeline_generator_asks_for_a_cases_output_size_and_judges_at_the_truths():
    """A 128 -> 512 upscale case asks the pipeline for 512 px and keeps the output at 512; every
    other case is generated at the model's size and judged at 128 px, as before."""
    asked = []

    class FakePipe:
        settings = type("S", (), {"default_size": 256})()
        dit = type("D", (), {"dims": type("M", (), {"tasks": ("t2i", "upscale")})()})()

        def __call__(self, **kw):
            asked.append((kw["height"], kw["width"]))
            return type("R", (), {"images": [Image.new("RGB", (kw["width"], kw["height"]))]})()

    gen = gn.PipelineGenerator(FakePipe())
    small = np.zeros((128, 128, 3), np.uint8)
    big = tk.Sample("upscale", "", [small], None, [np.zeros((512, 512, 3), np.uint8)], {"output_size": 512})
    plain = tk.Sample("t2i", "a fox", [], None, [np.zeros((128, 128, 3), np.uint8)], {})
    assert gen(big, 0)[0].shape == (512, 512, 3) and gen(plain, 0)[0].shape == (128, 128, 3)
    assert asked == [(512, 512), (256, 256)]
