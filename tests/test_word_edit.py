"""Word edits through glyphs (data/word_edit.py): 'change the word to "SALE"' is planned from the
picture (where the old word's ink is, its colour, and its font and size when the prompt quotes
it), drawn by the text task from the new word's glyph, and laid back on the picture."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from seedling.model.data import knowledge as kn
from seedling.model.data import word_edit as we
from seedling.model.data.glyphs import word_glyph
from seedling.model.data.icons import load_icons
from seedling.model.data.tasks import TaskSampler
from seedling.model.dit import DiT_tiny, UnifiedDiT
from seedling.model.pipeline import SeedlingPipeline
from seedling.model.task_table import STUDIO_TASKS


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _box_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("prompt, texts", [
    ('change the word to "SALE"', (None, "SALE")),
    ('replace "cat" with "dog"', ("cat", "dog")),
    ("make the text say “open”", (None, "open")),
    ('change the text to "Hi there"', (None, "Hi there")),
    ("make the circle blue", None),  # no quoted text
    ('"cat"', None),  # quoted, but no instruction to change anything
])
def test_word_edit_prompts_are_recognised(prompt, texts):
    assert we.word_edit_texts(prompt) == texts


def test_a_too_long_new_text_is_refused_with_a_sentence():
    with pytest.raises(ValueError, match="shorten it"):
        we.word_edit_texts('change the text to "' + "x" * 40 + '"')


def test_ink_is_found_on_a_flat_background_only():
    spec = kn.WordSpec("house", font="default", color="red", cap_height=30)
    found = we.find_ink(kn.render_word(spec))
    assert found is not None and found[0] == (255, 255, 255) and found[1] == kn.word_box(spec)
    assert we.find_ink(np.full((64, 64, 3), 255, np.uint8)) is None  # nothing written
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert we.find_ink(noise) is None  # no flat border: a photo, not a picture of a word


def test_plans_read_the_old_words_look_and_place_the_new_glyph_where_training_would():
    """40 word edits the harness's sampler draws: the ink colour is always named right; when the
    prompt quotes the old word, so is its font; the new glyph's box is where the training glyph
    of the target word lies (box IoU); the region holds both words' ink."""
    sampler = TaskSampler(load_icons()[:20], seed=0)
    rng = np.random.default_rng(0)
    colours, fonts, quoted, ious = 0, 0, 0, {True: [], False: []}
    for _ in range(40):
        s = sampler.edit(rng, "word")
        src, tgt = s.meta["source"], s.meta["target"]
        plan = we.plan_word_edit(s.prompt, s.refs[0])
        assert plan is not None and plan.new == tgt.text
        colours += plan.color == src.color
        if plan.old is not None:
            quoted += 1
            fonts += plan.font == src.font
        ious[plan.old is not None].append(_box_iou(_box(word_glyph(tgt)[..., 0] < 128), _box(plan.glyph[..., 0] < 128)))
        assert plan.region[kn.word_mask(src, pad=0)].all()
    assert colours == 40 and quoted >= 8 and fonts == quoted
    assert np.mean(ious[True]) > 0.9 and np.mean(ious[False]) > 0.75, ious


def test_the_composite_keeps_every_pixel_outside_the_region_and_the_background_inside():
    spec = kn.WordSpec("cat", font="default", color="blue", cap_height=30, background=(250, 220, 120))
    picture = kn.render_word(spec)
    plan = we.plan_word_edit('change the word to "dog"', picture)
    assert plan is not None and plan.background == (250, 220, 120) and plan.color == "blue"
    drawn = np.full_like(picture, 255)
    drawn[60:70, 40:90] = 0  # ink the text task drew
    out = we.composite(picture, drawn, plan)
    assert np.array_equal(out[~plan.region], picture[~plan.region])
    inside_white = plan.region & (drawn[..., 0] == 255)
    assert (out[inside_white] == (250, 220, 120)).all()  # white paper shows the picture's background
    assert (out[plan.region & (drawn[..., 0] == 0)] == 0).all()


def _tiny(tasks=None) -> SeedlingPipeline:
    torch.manual_seed(0)
    pipe = SeedlingPipeline.from_config("tiny")
    if tasks is not None:
        dit = UnifiedDiT(replace(DiT_tiny(), tasks=tasks, num_tasks=8))
        dit.load_state_dict({k: v for k, v in pipe.dit.state_dict().items() if k != "task_embed.weight"}
                            | {"task_embed.weight": pipe.dit.state_dict()["task_embed.weight"][:8]})
        pipe = SeedlingPipeline(dit, pipe.autoencoder, pipe.text_encoder, pipe.settings)
    return pipe


def test_the_pipeline_runs_word_edits_through_the_text_task_when_the_model_has_it():
    picture = Image.fromarray(kn.render_word(kn.WordSpec("cat", font="default", color="red", cap_height=30)))
    pipe = _tiny()  # a new model knows every task of the table, the text task too
    out = pipe('change the word to "dog"', task="edit", images=[picture], steps=1, seed=0)
    p = out.parameters
    assert p["task"] == "edit" and p["glyph"] is True and p["word_edit"]["new"] == "dog"
    assert p["word_edit"]["color"] == "red" and p["word_edit"]["text_prompt"].startswith('the word "dog"')
    assert p["guidance"] == pipe.settings.task_guidance.get("text", pipe.settings.guidance)
    plan = we.plan_word_edit('change the word to "dog"', picture)
    img = np.asarray(out.images[0])
    assert img.shape == (128, 128, 3) and np.array_equal(img[~plan.region], np.asarray(picture)[~plan.region])
    assert "word_edit" not in pipe("make it blue", task="edit", images=[picture], steps=1, seed=0).parameters
    with pytest.raises(ValueError, match="output_type"):
        pipe('change the word to "dog"', task="edit", images=[picture], steps=1, output_type="latent")
    six = _tiny(STUDIO_TASKS)  # a model without the text task: the ordinary edit
    assert "word_edit" not in six('change the word to "dog"', task="edit", images=[picture], steps=1).parameters
