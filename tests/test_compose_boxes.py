"""Compose by placing: the spec's reference boxes (checked with sentences), the runner hands them
to the pipeline, the job and its PNG keep them, and the Compose tab's layout, boxes text and
Expand fill them. The browser side is tests/test_compose_boxes_browser.py."""

from __future__ import annotations

import json

import gradio as gr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from seedling.backend.errors import InvalidJob
from seedling.backend.huey_app import make_memory_huey
from seedling.backend.parameters import restore_parameters
from seedling.backend.prompt_expansion import PromptExpansionService
from seedling.backend.services import build_services
from seedling.backend.specs import make_spec, spec_from_params
from seedling.model.prompt_expansion.layouts import reference_boxes
from seedling.model.prompt_expansion.result import REWRITE, ExpansionResult
from seedling.storage.jobs_common import JobStatus
from seedling.storage.pngmeta import read_parameters
from seedling.ui import compose_boxes
from seedling.ui.blocks import build_ui
from tests.conftest import execute_next
from tests.fuzz_helpers import assert_readable

HALVES = [(0.0, 0.25, 0.5, 0.75), (0.5, 0.25, 1.0, 0.75)]


def _compose(**fields):
    return make_spec("compose", **({"prompt": "x", "reference_image_ids": [1, 2]} | fields))


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ([[0.6, 0.0, 0.4, 1.0], None], r"box 1 is \[0.6, 0.0, 0.4, 1.0\]: give x0 < x1 and y0 < y1"),
        ([None, [0.0, 0.5, 1.0, 0.5]], "box 2 is .*: give x0 < x1 and y0 < y1"),
        ([[0.0, 0.0, 1.5, 1.0], None], "box 1 is .*: its corners are fractions of the picture, from 0 to 1"),
        ([[0.0, 0.0, float("nan"), 1.0], None], "fractions of the picture"),
        ([[0.0, 0.0, 0.05, 1.0], None], "too small; make each side at least 1/16 of the picture"),
        ([[0.0, 0.0, 1.0], None], r"give four numbers \[x0, y0, x1, y1\], or null for no box"),
        ([["0", 0, 1, 1], None], "its corners must be numbers"),
        ([[True, 0, 1, 1], None], "its corners must be numbers"),
        ("left", "give the boxes as a list"),
        ([[0, 0, 1, 1]], "1 box for 2 references: give one box .* per reference image"),
        ([None, None, None], "3 boxes for 2 references"),
    ],
)
def test_bad_boxes_are_refused_with_a_sentence(boxes, message):
    with pytest.raises(InvalidJob, match=message):
        _compose(boxes=boxes)


_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JUNK)
def test_any_boxes_value_is_a_spec_or_a_sentence(boxes):
    try:
        spec = _compose(boxes=boxes)
    except InvalidJob as err:
        assert_readable(err)
        return
    assert spec.boxes is None or len(spec.boxes) == 2


def test_boxes_are_optional_and_may_leave_a_reference_free():
    assert _compose().boxes is None
    spec = _compose(boxes=[[0, 0.25, 0.5, 0.75], None])
    assert spec.boxes == [(0.0, 0.25, 0.5, 0.75), None]
    assert spec_from_params(spec.model_dump(mode="json")) == spec  # the stored form reads back equal
    with pytest.raises(InvalidJob, match="boxes"):
        make_spec("style", prompt="x", style_image_id=1, boxes=HALVES)  # style uses the whole frame


@pytest.fixture(scope="module")
def sensitive_loader(tiny_model_dir):
    """The tiny model with its zero-initialised layers nudged, so that its pictures depend on the
    references and where they are placed (as tests/test_pipeline.py does); its own copy, never
    the session's shared one."""
    import torch

    from seedling.backend.model_host import load_pipeline

    cache: dict = {}

    def loader(path, device, quantize):
        if "pipe" not in cache:
            cache["pipe"] = load_pipeline(path, device, quantize)
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for prm in cache["pipe"].dit.parameters():
                    prm.add_(torch.randn(prm.shape, generator=generator) * 0.05)
        return cache["pipe"]

    return loader


@pytest.fixture
def placing(settings, sensitive_loader):
    svc = build_services(settings, huey=make_memory_huey(), loader=sensitive_loader)
    yield svc
    svc.close()


def _run(services, **fields):
    refs = [services.history.store_input(Image.new("RGB", (128, 128), c)) for c in ("red", "navy")]
    spec = make_spec(
        "compose", prompt="the red one and the blue one", reference_image_ids=[r.id for r in refs], seed=5,
        steps=2, **fields,
    )  # fmt: skip
    job = services.jobs.submit(spec)
    execute_next(services.huey)
    view = services.jobs.view(job.id)
    assert view.job.status == JobStatus.SUCCEEDED, view.job.error
    return view


def _pixels(services, image) -> np.ndarray:
    return np.asarray(Image.open(services.history.path(image)).convert("RGB"))


def test_boxes_reach_the_pipeline_and_are_stored_with_the_job_and_in_the_png(placing):
    services = placing
    free = _run(services)
    whole = _run(services, boxes=[[0, 0, 1, 1], [0, 0, 1, 1]])
    placed = _run(services, boxes=HALVES)
    # the pipeline's invariant: full-frame boxes are no boxes; placing the references changes the picture
    assert np.array_equal(_pixels(services, whole.images[0]), _pixels(services, free.images[0]))
    assert not np.array_equal(_pixels(services, placed.images[0]), _pixels(services, free.images[0]))

    image = placed.images[0]
    assert placed.job.spec["boxes"] == [list(b) for b in HALVES]
    assert image.params["boxes"] == [list(b) for b in HALVES]
    assert free.images[0].params["boxes"] is None
    with Image.open(services.history.path(image)) as png:
        text = read_parameters(png)
    assert 'Boxes: "[[0.0, 0.25, 0.5, 0.75], [0.5, 0.25, 1.0, 0.75]]"' in text
    assert restore_parameters(text).boxes == [list(b) for b in HALVES]
    assert restore_parameters(text.replace("Boxes: ", "Boxes: x")).boxes is None  # damaged: none
    with Image.open(services.history.path(free.images[0])) as png:
        assert "Boxes" not in read_parameters(png)
    # a re-run is the stored spec: the same boxes, the same pixels
    again = services.jobs.rerun(placed.job.id)
    execute_next(services.huey)
    (rerun,) = services.jobs.view(again.id).images
    assert np.array_equal(_pixels(services, rerun), _pixels(services, image))


def test_named_layouts_are_the_training_layouts_where_the_model_learnt_them():
    for layout, name, n in (
        ("halves", "side by side", 2),
        ("thirds", "side by side", 3),
        ("two_over_one", "grid 2x2", 3),
        ("quadrants", "grid 2x2", 4),
    ):
        trained = reference_boxes(layout, list(range(n)))
        assert compose_boxes.layout_boxes(name, n) == trained
        assert compose_boxes.layout_of(trained) == name
    assert compose_boxes.layout_of(None) == compose_boxes.FREE
    assert compose_boxes.layout_of([[0.1, 0.1, 0.6, 0.6], None]) == compose_boxes.CUSTOM
    for name in compose_boxes.LAYOUTS:  # every named layout is a valid spec for 1-4 references
        for n in range(1, 5):
            boxes = compose_boxes.layout_boxes(name, n)
            make_spec("compose", prompt="x", reference_image_ids=list(range(1, n + 1)), boxes=boxes)


def _fn(demo, name):
    return next(fn.fn for fn in demo.fns.values() if fn.api_name == name)


def _submitted(services, demo, **values):
    refs = {"ref1": Image.new("RGB", (128, 128), "red"), "ref2": Image.new("RGB", (128, 128), "navy")}
    job_id = next(_fn(demo, "compose")(**({"mode": "compose", "prompt": "x", "steps": 1} | refs | values)))[0]
    return services.jobs.get(job_id).spec


def test_the_compose_endpoint_takes_a_layout_name_or_boxes_as_json_text(services):
    demo = build_ui(services)
    assert _submitted(services, demo)["boxes"] is None  # API callers that never heard of boxes
    assert _submitted(services, demo, layout="side by side")["boxes"] == [list(b) for b in HALVES]
    text = "[[0, 0, 0.5, 1], null]"
    assert _submitted(services, demo, layout="side by side", boxes=text)["boxes"] == [[0, 0, 0.5, 1], None]
    with pytest.raises(gr.Error, match="The boxes are not a JSON list"):
        _submitted(services, demo, boxes="[[0, 0, 0.5, 1]")
    with pytest.raises(gr.Error, match="1 box for 2 references"):
        _submitted(services, demo, boxes="[[0, 0, 0.5, 1]]")
    with pytest.raises(gr.Error, match="Layout 'diagonal' is not one of"):
        _submitted(services, demo, layout="diagonal")
    with pytest.raises(gr.Error, match="Style mode places no boxes"):
        _submitted(services, demo, mode="style", ref2=None, layout="side by side")


def test_layout_and_references_keep_the_boxes_text_in_step():
    red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    halves = compose_boxes.text_of(HALVES)
    assert compose_boxes.picked("side by side", red, None, blue, None) == halves
    assert compose_boxes.picked(compose_boxes.FREE, red, blue) == ""
    assert compose_boxes.picked(compose_boxes.CUSTOM, red, blue) is not halves  # gr.skip(): kept
    # a third reference: a named layout is redrawn; custom boxes gain one in the middle
    three = compose_boxes.references_changed("side by side", halves, red, blue, red, None)
    assert len(json.loads(three)) == 3
    custom = "[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]"
    grown = json.loads(compose_boxes.references_changed("custom", custom, red, blue, red, None))
    assert grown == [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], list(compose_boxes.NEW_BOX)]
    shrunk = json.loads(compose_boxes.references_changed("custom", custom, red, None, None, None))
    assert shrunk == [[0, 0, 0.5, 0.5]]
    kept = compose_boxes.references_changed("custom", custom, red, blue, None, None)
    assert not isinstance(kept, str)  # the count fits: the boxes placed by hand stay as they are


class PlacingExpander:
    name = "placing"

    def expand(self, prompt, task="t2i", num_outputs=None, n_refs=None):
        boxes = reference_boxes("halves", [1, 0]) if "left" in prompt else None
        return ExpansionResult(prompt, prompt, task, REWRITE, True, boxes=boxes, expander=self.name)


def test_expand_shows_the_boxes_of_the_places_the_prompt_names(services):
    services.expansion = PromptExpansionService(factory=lambda folder: PlacingExpander())
    demo = build_ui(services)
    tab = demo.generation_tabs["compose"]
    expand = next(fn.fn for fn in demo.fns.values() if fn.name == "on_expand" and tab["layout"] in fn.inputs)
    red = Image.new("RGB", (8, 8), "red")
    # expand_inputs: mode, layout, boxes, ref1-4
    out = expand("the cat from 2 on the left and the dog from 1 on the right", "compose", "free (no boxes)", "",
                 red, red, None, None)  # fmt: skip
    assert out[:2] == (True, "the cat from 2 on the left and the dog from 1 on the right")
    mode, layout, boxes, *refs = out[3:]
    assert layout == compose_boxes.CUSTOM  # ref 2 on the left: not the named layout's order
    assert json.loads(boxes) == [[0.5, 0.25, 1.0, 0.75], [0.0, 0.25, 0.5, 0.75]]
    assert all(not isinstance(v, (str, Image.Image)) for v in (mode, *refs))  # left as they are
    placed_by_hand = expand(
        "the cat on the left", "compose", "custom", "[[0, 0, 1, 1], null]", red, red, None, None
    )
    assert all(not isinstance(v, str) for v in placed_by_hand[3:])
    no_places = expand("a cat and a dog", "compose", "free (no boxes)", "", red, red, None, None)
    assert all(not isinstance(v, str) for v in no_places[3:])
