"""The shipped default model (assets/default) loads and does what it was trained to do, judged by
the evaluation harness's own detectors. Thresholds sit below what the evaluation measured for
these exact cases (see assets/default/MODEL_CARD.md), so a broken model, a mismatched
autoencoder or a sampler regression fails them while the shipped weights pass."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seedling.model.data.icons import load_icons
from seedling.model.data.tasks import TaskSampler
from seedling.model.eval import detectors as det
from seedling.model.pipeline import SeedlingPipeline

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "default"


@pytest.fixture(scope="module")
def pipe():
    if not (ASSETS / "pipeline.json").exists():
        pytest.fail("assets/default is missing: the embedded default model must ship with the repository")
    return SeedlingPipeline.from_pretrained(ASSETS)


@pytest.fixture(scope="module")
def icons():
    return load_icons()


def test_config_and_size(pipe):
    assert pipe.dit.num_parameters() > 5e6
    total = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    assert total <= 60e6, f"embedded checkpoint is {total / 1e6:.1f} MB; keep it under 60 MB"


def test_autoencoder_reconstructs(pipe, icons):
    sampler = TaskSampler(icons, seed=11)
    rng = np.random.default_rng(11)
    imgs = [sampler.sample("t2i", rng).outputs[0] for _ in range(16)]
    from seedling.model.autoencoder import images_to_tensor, tensor_to_images

    rec = tensor_to_images(pipe.autoencoder.decode(pipe.autoencoder.encode(images_to_tensor(imgs))))
    score = np.mean([det.psnr(a, np.asarray(b)) for a, b in zip(imgs, rec)])
    # the shipped decoder's measured PSNR is in the model card
    assert score >= AE_PSNR_MIN, f"autoencoder PSNR {score:.1f} dB"


def test_instruction_edits_preserve_the_rest(pipe, icons):
    sampler = TaskSampler(icons, seed=3)
    rng = np.random.default_rng(3)
    values = []
    for i in range(8):
        s = sampler.edit(rng, kind="recolor")
        out = pipe(prompt=s.prompt, task="edit", images=[Image.fromarray(s.refs[0])], seed=i).images[0]
        values.append(min(det.psnr(np.asarray(out), s.refs[0], ~s.meta["region"]), 60.0))
    print("psnr_outside", np.mean(values))
    assert np.mean(values) >= PSNR_OUTSIDE_EDIT_MIN, f"PSNR outside the edit {np.mean(values):.1f} dB"


def test_text_to_image_icons_rank_near_the_prompted_icon(pipe, icons):
    """Median rank of the prompted icon among all icons by appearance: ~825 of 1650 for a model
    that ignores the text, far better for the shipped one."""
    index = det.IconIndex(icons)
    sampler = TaskSampler(icons, seed=0)
    rng = np.random.default_rng(0)
    chosen = [icons[i] for i in np.random.default_rng(5).choice(len(icons), 40, replace=False)]
    ranks, other = [], []
    for k, icon in enumerate(chosen):
        s = sampler.t2i_icon(rng, icon, phrasing=1)
        names, dist = index.distances(np.asarray(pipe(prompt=s.prompt, seed=k).images[0]))
        order = [names[i] for i in np.argsort(dist, kind="stable")]
        ranks.append(order.index(icon.name))
        other.append(order.index(chosen[(k + 1) % len(chosen)].name))  # an icon that was not asked for
    print("median_rank", float(np.median(ranks)), "unprompted", float(np.median(other)))
    assert np.median(ranks) <= ICON_MEDIAN_RANK_MAX, f"median rank {np.median(ranks)} of {len(icons)}"
    assert np.median(ranks) < 0.8 * np.median(other), "the prompt must pull the image toward its icon"


def test_free_phrasings_reach_the_icon_through_the_prompt_expander(pipe, icons):
    """'could you make a fox for me': the shipped pipeline expands t2i prompts (pipeline.json
    expand_prompts), so the 40 icons of the test above, asked for in the free-phrasing suite's
    wordings, rank near their icon, and nearer than the same prompts run as typed."""
    from seedling.model.eval.free_phrasing import free_prompt

    index = det.IconIndex(icons)
    rng = np.random.default_rng(0)
    chosen = [icons[i] for i in np.random.default_rng(5).choice(len(icons), 40, replace=False)]
    ranks = {True: [], False: []}  # expanded (the default), as typed
    for k, icon in enumerate(chosen):
        prompt, _ = free_prompt((icon.name,), icon.group, rng)
        for expand in (True, False):
            out = pipe(prompt=prompt, seed=k, expand_prompt=None if expand else False)
            assert ("typed_prompt" in out.parameters) == expand
            names, dist = index.distances(np.asarray(out.images[0]))
            ranks[expand].append([names[i] for i in np.argsort(dist, kind="stable")].index(icon.name))
    print("median_rank expanded", float(np.median(ranks[True])), "as typed", float(np.median(ranks[False])))
    assert np.median(ranks[True]) <= ICON_MEDIAN_RANK_MAX  # measured 108.5, as typed 192 (AMD EPYC)
    assert np.median(ranks[True]) < np.median(ranks[False])


def test_inpaint_keeps_outside_pixels_exactly(pipe, icons):
    sampler = TaskSampler(icons, seed=4)
    s = sampler.inpaint(np.random.default_rng(4))
    out = np.asarray(pipe(prompt=s.prompt, task="inpaint", images=[Image.fromarray(s.refs[0])],
                          mask=Image.fromarray(s.mask), seed=0).images[0])
    keep = s.mask < 128
    assert np.array_equal(out[keep], s.refs[0][keep])


def test_quoted_words_come_out_readable(pipe):
    """The text task (the glyph drawn by the pipeline, restyled by the model's text adapter): mean
    character error of Tesseract's reading over 12 fixed words; the model before it wrote
    letter-like noise (character error 0.94 on the harness's words suite)."""
    from seedling.model.data import knowledge as kn
    from seedling.model.eval import ocr

    if ocr.tesseract_missing_reason() is not None:
        pytest.skip(ocr.tesseract_missing_reason())
    rng = np.random.default_rng(7)
    words = [kn.WORDS[i] for i in rng.choice(len(kn.WORDS), 12, replace=False)]
    cers = []
    for k, word in enumerate(words):
        out = pipe(f'the word "{word}"', seed=k)
        assert out.parameters["task"] == "text" and out.parameters["glyph"] is True
        read = ocr.normalize_text(ocr.ocr_word(out.images[0]) or "")
        cers.append(ocr.edit_distance(read, word.lower()) / len(word))
    print("mean_cer", float(np.mean(cers)))
    assert np.mean(cers) <= WORD_CER_MAX


# measured values are in the model card; these sit below them
# at the defaults of the distilled student, 2 steps and guidance 1 (detail transfer on)
AE_PSNR_MIN = 28.0  # measured 30.6 dB (an earlier decoder, 25.7, fails it: see the model card)
PSNR_OUTSIDE_EDIT_MIN = 34.0  # measured 38.8 dB (earlier models: model card)
ICON_MEDIAN_RANK_MAX = 200  # measured 108.5 (unprompted icons: 708.5; chance: ~825)
WORD_CER_MAX = 0.35  # measured 0.03 (the text adapter of 5,000 steps; 0.13 after its first 2,600), guidance 3, AMD EPYC; without the text task ~0.94


def test_sketches_and_gray_pictures_become_coloured_pictures_of_them(pipe, icons):
    """The control tasks (the control adapter; guidance 3 for sketch and 5 for colourise, from
    pipeline.json): 8 fixed icons. A sketch's lines are followed (the generation's own sketch
    against it, F1) and the picture is coloured; a gray picture comes back coloured with its
    luminance kept. Returning the control unchanged fails both (it has no colour)."""
    from seedling.model.data import captions as cap
    from seedling.model.data import controls as ctl
    from seedling.model.data.tasks import composite
    from seedling.model.eval import control_detectors as cdet

    f1, sketch_coloured, gray_coloured = [], 0, 0
    for k, icon in enumerate(icons[:64:8]):
        truth, prompt = composite(icon.rgba), cap.icon_caption(icon.name, icon.group, None, phrasing=1)
        want = cdet.colorfulness(truth) * 0.5
        sketch = ctl.sketch_control(truth)
        out = np.asarray(pipe(prompt, task="sketch", images=[Image.fromarray(sketch)], seed=k).images[0])
        f1.append(cdet.sketch_agreement(out, sketch)["f1"])
        sketch_coloured += cdet.colorfulness(out) >= want
        gray = ctl.grayscale_control(truth)
        out = pipe(prompt, task="colourise", images=[Image.fromarray(gray)], seed=k)
        assert out.parameters["guidance"] == 5.0 and out.parameters["luminance_kept"] is True
        img = np.asarray(out.images[0])
        assert np.abs(np.asarray(out.images[0].convert("L"), np.float32) - gray[..., 0]).max() <= 1.0
        gray_coloured += cdet.colorfulness(img) >= want
    print("sketch_f1", float(np.mean(f1)), "sketch_coloured", sketch_coloured, "gray_coloured", gray_coloured)
    assert np.mean(f1) >= SKETCH_F1_MIN and sketch_coloured >= 5 and gray_coloured >= 5


def test_edge_maps_become_pictures_of_their_icon(pipe, icons):
    """The edges task (the control adapter; edge maps enter the model dark on white,
    controls.model_view): 8 fixed icons, their Canny maps as users give them (white on black). The
    generation's own edges follow the map (F1 at 2 px) and it retrieves its icon first among 200.
    Before the edge maps were inverted for the model, the harness retrieved 10-27.5%."""
    from seedling.model.data import captions as cap
    from seedling.model.data import controls as ctl
    from seedling.model.data.tasks import composite
    from seedling.model.eval import control_detectors as cdet

    index = det.IconIndex(icons[:200])
    f1, retrieved = [], 0
    for k, icon in enumerate(icons[:64:8]):
        truth, prompt = composite(icon.rgba), cap.icon_caption(icon.name, icon.group, None, phrasing=1)
        edges = ctl.edges_control(truth)
        out = np.asarray(pipe(prompt, task="edges", images=[Image.fromarray(edges)], seed=k).images[0])
        f1.append(cdet.edge_agreement(out, edges)["f1"])
        retrieved += index.is_match(index.rank(out, k=1)[0], icon.name)
    print("edges_f1", float(np.mean(f1)), "retrieved", retrieved, "of 8")
    assert np.mean(f1) >= EDGES_F1_MIN and retrieved >= EDGES_RETRIEVED_MIN


def test_small_pictures_upscale_better_than_bicubic(pipe, icons):
    """The upscale task (the control adapter) with the small input kept (pipeline.json
    upscale_keeps_input): 8 fixed icons, 32 px -> 128 px. PSNR against the icon over bicubic
    upsampling of the same small picture; keeping the small input alone (no model) gains ~1.6 dB."""
    from seedling.model.data import controls as ctl
    from seedling.model.data.tasks import composite
    from seedling.model.eval import control_detectors as cdet

    gains = []
    for k, icon in enumerate(icons[3:64:8]):
        truth = composite(icon.rgba)
        small = ctl.downsample(truth, 4)
        out = pipe("", task="upscale", images=[Image.fromarray(small)], height=128, width=128, seed=k)
        assert out.parameters["input_kept"] is True
        gains.append(cdet.psnr_over_bicubic(np.asarray(out.images[0]), small, truth))
    print("upscale gain over bicubic", float(np.mean(gains)))
    assert np.mean(gains) >= UPSCALE_GAIN_MIN_DB


def test_a_128_px_picture_upscales_to_512_in_tiles_better_than_back_projection_alone(pipe, icons):
    """pipeline.json upscale_tiled: 128 -> 512 is drawn in 128 px tiles (the model's native size)
    and back-projected. 4 icons drawn natively at 512 px: the gain over bicubic, and over
    back-projection alone (bicubic made to average down to the input, no model)."""
    from seedling.model.data import controls as ctl
    from seedling.model.data.tasks import composite
    from seedling.model.eval import control_detectors as cdet
    from seedling.model.postprocess import keep_low_resolution

    gains, over_bp = [], []
    for k, icon in enumerate(icons[5:64:16]):
        truth = composite(icon.rgba_at(512))
        small = ctl.downsample(truth, 4)
        out = pipe("", task="upscale", images=[Image.fromarray(small)], height=512, width=512, seed=k)
        assert out.parameters["tiles"]["count"] == 25 and out.images[0].size == (512, 512)
        bicubic = ctl.upsample_bicubic(small, (512, 512)).astype(np.float32)
        bp = np.round(keep_low_resolution(small.astype(np.float32), bicubic, 4)).astype(np.uint8)
        gains.append(cdet.psnr_over_bicubic(np.asarray(out.images[0]), small, truth))
        over_bp.append(gains[-1] - cdet.psnr_over_bicubic(bp, small, truth))
    print("128 -> 512 gain over bicubic", float(np.mean(gains)), "over back-projection", float(np.mean(over_bp)))
    assert np.mean(gains) >= UPSCALE_512_GAIN_MIN_DB and np.mean(over_bp) >= UPSCALE_512_OVER_BP_MIN_DB


UPSCALE_512_GAIN_MIN_DB = 3.0  # measured 3.9 dB on these 4 (AMD EPYC, AVX2), 4.7 on the harness's 17 icons
UPSCALE_512_OVER_BP_MIN_DB = 0.5  # measured 1.2 dB on these 4, 1.9 on the harness's icons
UPSCALE_GAIN_MIN_DB = 3.0  # measured 4.7 dB (AMD EPYC); bicubic with the small input kept, no model: ~1.6
EDGES_F1_MIN = 0.85  # measured 0.90 (AMD EPYC, AVX512-BF16); the harness before the inversion: 0.57
EDGES_RETRIEVED_MIN = 4  # measured 5 of 8; the harness before the inversion retrieved 11% top-1
SKETCH_F1_MIN = 0.8  # measured 0.96 (AMD EPYC), sketches 8 of 8 coloured, gray pictures 6 of 8 (at guidance 5); a sketch copied back scores ~1 but no colour


def test_compose_puts_each_reference_where_the_prompt_says(pipe, icons):
    """Compose with reference boxes read off the prompt (the compose task adapter): 8 fixed
    two-reference cases, named in the opposite order to the references, and by order. Each half
    holds its own reference (among the two and 6 other icons). Free placement (the model before)
    scored 0-3% with every slot right on the harness."""
    from seedling.model.data.tasks import composite

    index = det.IconIndex(icons[:200])
    left, right = (0, 32, 64, 96), (64, 32, 128, 96)
    right_all = 0
    for k in range(8):
        a, b = icons[3 + 17 * k], icons[11 + 23 * k]
        refs = [Image.fromarray(composite(a.rgba)), Image.fromarray(composite(b.rgba))]
        prompt = (f"the {b.name} on the left and the {a.name} on the right" if k % 2 == 0
                  else "put the second image on the left and the first image on the right")
        out = pipe(prompt, task="compose", images=refs, seed=k)
        assert out.parameters["boxes"] == [[0.5, 0.25, 1.0, 0.75], [0.0, 0.25, 0.5, 0.75]]
        others = [i.name for i in icons[100:106]]
        ok = det.check_compose(np.asarray(out.images[0]), [(1, left), (0, right)], [a.name, b.name], index, others)
        right_all += all(ok)
    print("compose all slots", right_all, "of 8")
    assert right_all >= 5  # measured 8 of 8 (AMD EPYC); the harness: 93% of 30


WORD_EDIT_READ_MIN = 3  # measured 5 of 8 (AMD EPYC); the ordinary edit reads back none


def test_word_edits_replace_the_word_and_keep_the_rest(pipe, icons):
    """'change the word to ...' on a picture of a word (word edits through glyphs, the text
    adapter): 8 fixed cases of the harness's edit_word kind. The new word is read back by Tesseract
    and every pixel away from the two words stays the picture's own. The ordinary edit (the model
    before) read back 0% on the harness."""
    from seedling.model.eval import ocr

    if ocr.tesseract_missing_reason() is not None:
        pytest.skip(ocr.tesseract_missing_reason())
    sampler = TaskSampler(icons, seed=5)
    rng = np.random.default_rng(5)
    read_right, outside = 0, []
    for k in range(8):
        s = sampler.edit(rng, kind="word")
        out = pipe(prompt=s.prompt, task="edit", images=[Image.fromarray(s.refs[0])], seed=k)
        assert out.parameters["glyph"] is True, s.prompt
        img = np.asarray(out.images[0])
        read = ocr.normalize_text(ocr.ocr_word(out.images[0]) or "")
        read_right += read == ocr.normalize_text(s.meta["target"].text)
        outside.append(min(det.psnr(img, s.refs[0], ~s.meta["region"]), 60.0))
    print("word edits read back", read_right, "of 8; PSNR outside", float(np.mean(outside)))
    assert read_right >= WORD_EDIT_READ_MIN and min(outside) >= PSNR_OUTSIDE_EDIT_MIN

