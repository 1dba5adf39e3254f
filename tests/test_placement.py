"""Compose placement: the prompt's layout words -> one box per reference, named subjects matched
to the references by look (prompt_expansion/placement.py), and the pipeline using it."""

import numpy as np
import pytest
import torch
from PIL import Image

from seedling.model.data import tasks as tk
from seedling.model.data.icons import load_icons
from seedling.model.data.styles import composite
from seedling.model.eval.compose_unnamed import unnamed_compose_cases
from seedling.model.eval.harness import EvalConfig, EvalContext
from seedling.model.prompt_expansion.grounded import GroundedExpander
from seedling.model.prompt_expansion.placement import icon_image, place_references
from seedling.model.prompt_expansion.result import REWRITE, ExpansionResult, Match

LEFT, RIGHT = (0.0, 0.25, 0.5, 0.75), (0.5, 0.25, 1.0, 0.75)


@pytest.fixture(scope="module")
def icons():
    return load_icons()


@pytest.fixture(scope="module")
def pe() -> GroundedExpander:
    return GroundedExpander()


def named(*names, boxes=(LEFT, RIGHT)) -> ExpansionResult:
    """A compose expansion naming `names` in the prompt's order, box i for subject i."""
    matches = [Match(n, "icon", n, 1.0) for n in names]
    return ExpansionResult("typed", "prompt", "compose", REWRITE, True, matches=matches, boxes=list(boxes))


def picture(name) -> np.ndarray:
    return composite(icon_image(name))


def truth_boxes(sample) -> list:
    out = [None] * len(sample.refs)
    for r, box in sample.meta["slots"]:
        out[r] = tuple(v / tk.SIZE for v in box)
    return out


def test_named_subjects_find_their_reference_whatever_the_upload_order(icons):
    res = named("fox", "cat")  # "the fox on the left and the cat on the right"
    in_order = place_references(res, [picture("fox"), picture("cat")], icon_image)
    assert in_order.boxes == [LEFT, RIGHT] and in_order.matched
    swapped = place_references(res, [picture("cat"), picture("fox")], icon_image)
    assert swapped.boxes == [RIGHT, LEFT] and swapped.matched
    assert "fox: reference 2" in swapped.notes[0]


def test_references_that_look_like_no_named_icon_keep_the_prompts_order(icons):
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(2)]
    placed = place_references(named("fox", "cat"), noise, icon_image)
    assert placed.boxes == [LEFT, RIGHT] and not placed.matched
    assert "order the prompt names them" in placed.notes[0]


def test_by_order_boxes_stand_and_mismatched_counts_are_free(icons):
    by_order = ExpansionResult("t", "p", "compose", REWRITE, True, boxes=[RIGHT, LEFT],
                               matches=[Match("reference 1", "position", "on the right", 1.0)] * 2)
    assert place_references(by_order, [picture("cat"), picture("fox")], icon_image).boxes == [RIGHT, LEFT]
    three = place_references(named("fox", "cat"), [picture("fox")] * 3, icon_image)
    assert three.boxes is None and "2 subject(s) for 3 reference image(s)" in three.notes[0]
    none = ExpansionResult("t", "p", "compose", REWRITE, False)
    assert place_references(none, [picture("fox")] * 2, icon_image).boxes is None


def test_the_harness_compose_prompts_get_the_boxes_they_were_rendered_with(icons, pe):
    """Named and by-order training captions (the `compose` suite's kind) and the unnamed suite's
    prompts: the expansion plus the match by look place every reference where the truth has it."""
    sampler = tk.TaskSampler(icons, seed=0)
    rng = np.random.default_rng(5)
    samples = [sampler.compose(rng, phrasing=k % 2) for k in range(16)]
    ctx = EvalContext.build(icons, EvalConfig(n_icons=60))
    samples += unnamed_compose_cases(ctx, np.random.default_rng(3), 16)
    wrong = []
    for s in samples:
        res = pe.expand(s.prompt, "compose", n_refs=len(s.refs))
        placed = place_references(res, s.refs, icon_image)
        if placed.boxes is None or [tuple(b) for b in placed.boxes] != truth_boxes(s):
            wrong.append((s.prompt, placed.boxes))
    assert not wrong


def test_unnamed_cases_are_rendered_where_their_prompt_says(icons):
    ctx = EvalContext.build(icons, EvalConfig(n_icons=60))
    cases = unnamed_compose_cases(ctx, np.random.default_rng(1), 6)
    assert [c.meta["form"] for c in cases] == ["by order", "arranged"] * 3
    for c in cases:
        assert not any(name in c.prompt for name in c.meta["names"])  # never named
        assert len(c.refs) == len(c.meta["slots"]) and len(c.meta["distractors"]) == ctx.cfg.n_distractors
        by_name = {i.name: i for i in ctx.icons}
        for r, (x0, y0, x1, y1) in c.meta["slots"]:  # the reference is drawn in its slot's box
            want = tk.scaled_rgba(by_name[c.meta["names"][r]], x1 - x0)
            got = c.outputs[0][y0:y1, x0:x1]
            assert want.shape[:2] == got.shape[:2]
            drawn = want[..., 3] == 255
            assert np.abs(got[drawn].astype(int) - want[..., :3][drawn].astype(int)).max() <= 1


def test_the_pipeline_reads_boxes_from_the_prompt_only_for_a_boxes_model(icons):
    from seedling.model.pipeline import SeedlingPipeline

    pipe = SeedlingPipeline.from_config("tiny", seed=0)
    for prm in pipe.dit.parameters():
        with torch.no_grad():
            prm.add_(torch.randn_like(prm) * 0.05)
    refs = [Image.fromarray(picture("cat")), Image.fromarray(picture("fox"))]
    kw = {"prompt": "the fox on the left and the cat on the right", "task": "compose", "images": refs, "seed": 2,
          "height": 64, "width": 64, "steps": 2}
    free = pipe(**kw)
    assert "boxes" not in free.parameters  # a model not trained with boxes places references freely
    pipe.dit.dims.reference_boxes = True  # what an export of a --reference-boxes run says
    try:
        read = pipe(**kw)
        fox, cat = read.parameters["boxes"][1], read.parameters["boxes"][0]
        assert fox[2] <= 0.5 <= cat[0]  # the fox (reference 2) left, the cat (reference 1) right
        given = pipe(boxes=[tuple(cat), tuple(fox)], **kw)
        assert np.array_equal(np.asarray(read.images[0]), np.asarray(given.images[0]))
        assert not np.array_equal(np.asarray(read.images[0]), np.asarray(free.images[0]))
        assert "boxes" not in given.parameters  # given boxes are the caller's, not read from the prompt
    finally:
        pipe.dit.dims.reference_boxes = False


def test_the_compose_tabs_expand_shows_each_named_reference_where_the_prompt_puts_it(icons):
    from seedling.ui.compose_boxes import FREE, from_expansion, parse_text

    values = {"mode": "compose", "layout": FREE, "boxes": "", "ref1": Image.fromarray(picture("cat")),
              "ref2": Image.fromarray(picture("fox")), "ref3": None, "ref4": None}
    filled = from_expansion(named("fox", "cat"), values)  # the fox named first, added second
    assert parse_text(filled["boxes"]) == [list(RIGHT), list(LEFT)]


# -- storyboards drawn panel by panel ---------------------------------------------------------


def test_panel_plans_read_back_every_training_storyboard_caption(icons):
    from seedling.model.prompt_expansion.placement import panel_plan

    sampler = tk.TaskSampler(icons, seed=0)
    rng = np.random.default_rng(2)
    for k in range(30):
        s = sampler.storyboard(rng, phrasing=k % 3)
        plan = panel_plan(s.prompt)
        assert plan is not None, s.prompt
        assert [{**p, "angle": 0.0} for p in s.meta["panels"]] == plan.panels
        assert plan.boxes() == [tuple(v / tk.SIZE for v in tk.panel_box(p)) for p in s.meta["panels"]]
    assert panel_plan("a fox in the snow") is None
    assert panel_plan("a storyboard of a fox: on a plaid background") is None


def test_a_storyboard_panel_sample_places_its_character_in_the_panels_box(icons):
    sampler = tk.TaskSampler(icons, seed=0, storyboard_panels=True)
    rng = np.random.default_rng(4)
    drawn = [sampler.sample("compose", rng) for _ in range(40)]
    panels = [d for d in drawn if "panels" in d.meta]
    assert 10 <= len(panels) <= 30  # half of the compose draws are panels
    assert all(len(d.refs) >= 2 for d in drawn if "panels" not in d.meta)
    assert all(sampler.sample("storyboard", rng).refs == [] for _ in range(3))  # storyboards stay as they were
    s = panels[0]
    (panel,) = s.meta["panels"]
    assert s.task == "compose" and len(s.refs) == 1 and len(s.outputs) == 1
    assert all(d.meta["panels"][0]["angle"] == 0.0 for d in panels)  # upright: the caption says no tilt
    assert s.meta["slots"] == [(0, tk.panel_box(panel))]
    assert s.prompt.startswith("a storyboard of ") and s.prompt.endswith(tk.panel_phrase(panel))
    by_name = {i.name: i for i in icons}
    assert np.array_equal(s.refs[0], composite(by_name[s.meta["character"]].rgba))
    assert np.array_equal(s.outputs[0], tk.render_panel(by_name[s.meta["character"]], panel))


@pytest.fixture(scope="module")
def panel_pipe():
    from seedling.model.pipeline import PipelineConfig, SeedlingPipeline

    pipe = SeedlingPipeline.from_config("tiny", seed=0)
    for prm in pipe.dit.parameters():
        with torch.no_grad():
            prm.add_(torch.randn_like(prm) * 0.05)
    pipe.settings = PipelineConfig(**{**pipe.settings.to_dict(), "storyboard_by_panels": True})
    return pipe


def test_a_storyboard_by_panels_draws_each_panel_from_one_picture(panel_pipe):
    """The character first (a t2i of 'a fox'), then each panel a one-reference composition of it on
    white and an edit that paints its background."""
    prompt = "a storyboard of a fox: small on a blue background, then on the left on a green background"
    seen = []
    out = panel_pipe(prompt=prompt, task="storyboard", seed=3, height=64, width=64, steps=2,
                     callback=lambda i, total, prev: seen.append((i, total)))
    assert len(out.images) == 2 and out.parameters["by_panels"] and out.parameters["character"] == "a fox"
    assert out.parameters["panel_prompts"] == ["a storyboard of a fox: small on a white background",
                                               "a storyboard of a fox: on the left on a white background"]
    assert out.parameters["panel_edits"] == ["make the background blue", "make the background green"]
    assert seen[-1] == (10, 10)  # the character's 2 steps, then 2 per panel and 2 per background edit, on one bar
    again = panel_pipe(prompt=prompt, task="storyboard", seed=3, height=64, width=64, steps=2)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(out.images, again.images))
    given = panel_pipe(prompt=prompt, task="storyboard", images=[Image.fromarray(picture("fox"))], seed=3,
                       height=64, width=64, steps=2, num_outputs=3)
    assert len(given.images) == 3 and given.parameters["character"] == "given"
    assert not np.array_equal(np.asarray(given.images[0]), np.asarray(out.images[0]))


def test_a_storyboard_by_panels_says_what_it_could_not_read_and_stops_when_asked(panel_pipe):
    from seedling.model.pipeline import GenerationCancelled

    with pytest.raises(ValueError, match="could not be read as panels.*Not grounded"):
        panel_pipe(prompt="the quantum chromodynamics lagrangian then its renormalisation", task="storyboard", seed=0, height=64, width=64, steps=1)
    with pytest.raises(GenerationCancelled):
        panel_pipe(prompt="a storyboard of a fox: on a blue background, then on a red background", task="storyboard",
                   seed=0, height=64, width=64, steps=2, callback=lambda i, total, prev: i < 3 and None)


# -- in the studio -------------------------------------------------------------------------------


def test_studio_jobs_record_the_boxes_and_panels_the_pipeline_read_off_the_prompt(tmp_path, icons):
    """A model with reference boxes and storyboards by panels behind the queue: a compose job with
    no boxes records where the prompt put each reference; a storyboard job records its panels."""
    from dataclasses import replace

    from seedling.backend.huey_app import make_memory_huey
    from seedling.backend.model_host import load_pipeline
    from seedling.backend.services import build_services
    from seedling.backend.settings import Settings
    from seedling.backend.specs import make_spec
    from seedling.model.dit import DiT_tiny, UnifiedDiT
    from seedling.model.pipeline import PipelineConfig, SeedlingPipeline
    from seedling.storage.jobs_common import JobStatus
    from tests.conftest import execute_next

    tiny = SeedlingPipeline.from_config("tiny", seed=0)
    dit = UnifiedDiT(replace(DiT_tiny(), reference_boxes=True))
    dit.load_state_dict(tiny.dit.state_dict())
    settings = PipelineConfig(**{**tiny.settings.to_dict(), "storyboard_by_panels": True})
    SeedlingPipeline(dit, tiny.autoencoder, tiny.text_encoder, settings).save_pretrained(str(tmp_path / "model"))
    svc = build_services(Settings(data_dir=tmp_path / "data", model_path=tmp_path / "model", max_queue=3),
                         huey=make_memory_huey(), loader=lambda path, device, quantize: load_pipeline(path, device, quantize))
    try:
        cat, fox = (svc.history.store_input(Image.fromarray(picture(n))) for n in ("cat", "fox"))
        job = svc.jobs.submit(make_spec("compose", prompt="the fox on the left and the cat on the right",
                                        reference_image_ids=[cat.id, fox.id], steps=1))
        execute_next(svc.huey)
        view = svc.jobs.view(job.id)
        assert view.job.status == JobStatus.SUCCEEDED, view.job.error
        placed = view.images[0].params["placed_boxes"]
        assert placed[1][2] <= 0.5 <= placed[0][0]  # the fox (second reference) left, the cat right
        job = svc.jobs.submit(make_spec("storyboard", prompt="a storyboard of a fox: on a blue background, then "
                                        "small on a red background", num_outputs=2, steps=1))
        execute_next(svc.huey)
        view = svc.jobs.view(job.id)
        assert view.job.status == JobStatus.SUCCEEDED, view.job.error
        assert len(view.images) == 2 and all(im.params["by_panels"] for im in view.images)
        assert view.images[0].params["panel_prompts"][1] == "a storyboard of a fox: small on a white background"
    finally:
        svc.close()
