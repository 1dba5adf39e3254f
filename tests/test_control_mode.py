"""Geometric control in the studio (issue 19 §4): the Edit tab's modes draw a picture from the
source's edges or sketch lines, or colour it. An ordinary picture is traced first, as training
traced its controls; the job's image records the control task, the source as its control parent,
and its PNG text brings the mode back."""

from __future__ import annotations

import dataclasses

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from seedling.backend.errors import InvalidJob
from seedling.backend.parameters import restore_parameters
from seedling.backend.specs import make_spec
from seedling.model.data import controls as ctl
from seedling.model.data import tasks as tk
from seedling.model.data.icons import load_icons
from seedling.storage.jobs_common import JobStatus
from seedling.ui import edit_tab
from seedling.ui.fields import FieldContext, values_from_params
from tests.conftest import execute_next


def _icon(i: int = 0) -> np.ndarray:
    return tk.composite(load_icons()[i].rgba)


def test_a_control_passes_as_it_is_and_any_other_picture_is_traced():
    colour = [i for i in range(40) if (np.ptp(_icon(i).astype(int), axis=2) > 40).mean() > 0.05][:10]
    assert len(colour) == 10
    for i in colour:  # a colour picture (a gray line icon may well be a sketch already)
        icon = _icon(i)
        for kind, make in (("edges", ctl.edges_control), ("sketch", ctl.sketch_control)):
            control = make(icon)
            same, traced = ctl.as_control(kind, control)
            assert not traced and same is control
            drawn, traced = ctl.as_control(kind, icon)
            assert traced and np.array_equal(drawn, control)
    gray, traced = ctl.as_control("colourise", _icon(1))
    assert not traced and np.array_equal(gray, ctl.grayscale_control(_icon(1)))
    white = np.full((32, 32, 3), 255, np.uint8)  # a blank sketch is still a sketch, and no edge map
    assert ctl.is_control("sketch", white) and not ctl.is_control("edges", white)
    with pytest.raises(ValueError, match="'edges', 'sketch' or 'colourise'"):
        ctl.as_control("depth", white)


def test_an_edges_job_from_a_picture_draws_on_its_traced_lines(services):
    picture = Image.fromarray(_icon(3))
    upload = services.history.store_input(picture)
    job = services.jobs.submit(make_spec("edit", prompt="a fox", source_image_id=upload.id, control="edges", steps=1))
    execute_next(services.huey)
    view = services.jobs.view(job.id)
    assert view.job.status == JobStatus.SUCCEEDED, view.job.error
    (image,) = view.images
    assert image.task == "edges" and image.params["control"] == "edges" and image.params["control_traced"] is True
    assert [(r.image.id, r.role) for r in services.history.lineage(image.id).parents] == [(upload.id, "control")]
    restored = services.history.parameters_from_png(services.settings.files_dir / image.file_path)
    assert (restored.kind, restored.control) == ("edit", "edges")
    # a sketch given as a sketch is used as it is
    sketch = services.history.store_input(Image.fromarray(ctl.sketch_control(_icon(3))))
    job = services.jobs.submit(make_spec("edit", prompt="a fox", source_image_id=sketch.id, control="sketch", steps=1))
    execute_next(services.huey)
    (image,) = services.jobs.view(job.id).images
    assert image.task == "sketch" and image.params["control_traced"] is False
    with pytest.raises(InvalidJob, match="takes no mask"):
        make_spec("inpaint", prompt="a fox", source_image_id=upload.id, mask_image_id=sketch.id, control="sketch")


def test_the_edit_tab_offers_the_modes_the_model_has(services, tmp_path):
    with gr.Blocks():
        radio = edit_tab._mode(FieldContext(services, "edit"))  # the tiny model knows every task
    assert [v for _, v in radio.choices] == ["", "edges", "sketch", "colourise", "upscale_2x", "upscale_4x"]
    assert radio.visible
    (tmp_path / "dit").mkdir()
    (tmp_path / "dit" / "config.json").write_text('{"tasks": ["t2i", "edit", "sketch"]}')
    older = dataclasses.replace(services, settings=dataclasses.replace(services.settings, model_path=tmp_path))
    with gr.Blocks():
        radio = edit_tab._mode(FieldContext(older, "edit"))
    assert [v for _, v in radio.choices] == ["", "sketch"]
    (tmp_path / "dit" / "config.json").write_text('{"tasks": ["t2i", "edit", "upscale"]}')
    with gr.Blocks():
        assert [v for _, v in edit_tab._mode(FieldContext(older, "edit")).choices] == ["", "upscale_2x", "upscale_4x"]
    (tmp_path / "dit" / "config.json").write_text('{"tasks": ["t2i", "edit"]}')
    with gr.Blocks():
        assert not edit_tab._mode(FieldContext(older, "edit")).visible  # nothing to choose: no radio
    # a mode with a painted mask is refused with what to change
    from seedling.ui.fields import Upload

    fields = {"source_image_id": Upload(Image.new("RGB", (128, 128))), "mask_image_id": Upload(Image.new("L", (128, 128)), "mask"),
              "control": "edges"}
    ctx = FieldContext(services, "edit", extras={"sizes": _AnySize()})
    with pytest.raises(gr.Error, match="takes no mask"):
        edit_tab._draft(ctx, {}, fields)
    assert edit_tab._draft(ctx, {}, {**fields, "mask_image_id": None})[0] == "edit"
    assert edit_tab._expand_for({"control": "sketch", "editor_value": None, "mask": None})[0] == "t2i"
    # restoring an image's parameters sets the mode; an older edit (no control key) is an instruction edit
    text = "a fox\nSteps: 2, Seed: 1, Size: 128x128, Task: sketch, Kind: edit"
    assert values_from_params(edit_tab.ROWS, vars(restore_parameters(text)), ctx)["control"] == "sketch"
    assert values_from_params(edit_tab.ROWS, {"kind": "edit", "prompt": "x"}, ctx)["control"] == ""


def test_an_upscale_job_makes_the_source_larger_by_its_factor_and_needs_no_instruction(services):
    """The Edit tab's Upscale modes: the job's size is the source's times 2 or 4, its prompt may be
    empty (with prompt expansion on too), the source is the control parent, and the PNG's
    parameters bring the mode back (Task says upscale, Control which one)."""
    from seedling.ui.fields import Upload

    ctx = FieldContext(services, "edit", extras={"sizes": _AnySize()})
    source = Upload(Image.fromarray(_icon(2)).resize((64, 48)))
    kind, fields = edit_tab._draft(ctx, {}, {"source_image_id": source, "mask_image_id": None, "control": "upscale_4x"})
    assert kind == "edit" and (fields["width"], fields["height"]) == (256, 192)
    assert (edit_tab._draft(ctx, {}, {"source_image_id": source, "control": "upscale_2x"})[1]["width"]) == 128
    big = Upload(Image.new("RGB", (320, 320)))
    with pytest.raises(gr.Error, match="choose Upscale ×2, or a smaller source"):
        edit_tab._draft(ctx, {}, {"source_image_id": big, "control": "upscale_4x"})
    with pytest.raises(gr.Error, match="1280x1280, more than the 1024 px this app makes: choose a smaller source"):
        edit_tab._draft(ctx, {}, {"source_image_id": Upload(Image.new("RGB", (640, 640))), "control": "upscale_2x"})
    assert services.expansion.resolve("", True, None, "t2i").prompt == ""  # nothing typed: nothing to expand
    upload = services.history.store_input(source.image)
    job = services.jobs.submit(make_spec("edit", prompt="", source_image_id=upload.id, control="upscale_4x",
                                         width=256, height=192, steps=1))
    execute_next(services.huey)
    view = services.jobs.view(job.id)
    assert view.job.status == JobStatus.SUCCEEDED, view.job.error
    (image,) = view.images
    assert image.task == "upscale" and (image.width, image.height) == (256, 192)
    assert [(r.image.id, r.role) for r in services.history.lineage(image.id).parents] == [(upload.id, "control")]
    restored = services.history.parameters_from_png(services.settings.files_dir / image.file_path)
    assert (restored.kind, restored.control) == ("edit", "upscale_4x")
    # a size that is not the source's times the factor fails with what to ask instead
    job = services.jobs.submit(make_spec("edit", prompt="", source_image_id=upload.id, control="upscale_4x",
                                         width=256, height=256, steps=1))
    execute_next(services.huey)
    failed = services.jobs.view(job.id).job
    assert failed.status == JobStatus.FAILED and "is 256x192, not 256x256: ask that size" in failed.error
    with pytest.raises(InvalidJob, match="a prompt is required"):
        make_spec("edit", prompt="", source_image_id=upload.id, control="edges")


class _AnySize:
    @staticmethod
    def refusal(width, height, what):
        return None


def test_colourise_keeps_the_gray_pictures_luminance():
    """The model gives the colours; each pixel keeps the brightness the user's gray picture has
    (unless a colour that bright cannot exist: clipped). Off, the model's own picture comes back."""
    from seedling.model.pipeline import PipelineConfig
    from seedling.model.postprocess import keep_luminance
    from tests.test_text_task import _tiny_pipeline

    rng = np.random.default_rng(0)
    gray = rng.uniform(40, 215, (16, 16)).astype(np.float32)
    out = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    kept = keep_luminance(gray, out)
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(kept @ luma - gray).max() < 1e-3 and kept.min() >= 0 and kept.max() <= 255
    chroma, want = kept - (kept @ luma)[..., None], out - (out @ luma)[..., None]
    scale = (chroma * want).sum(-1) / (want * want).sum(-1)  # the same hue, at most as strong
    assert np.allclose(chroma, scale[..., None] * want, atol=1e-2) and 0 <= scale.min() and scale.max() <= 1 + 1e-5
    assert (scale > 0.99).mean() > 0.3  # where the colour fits, it is the model's own
    white = keep_luminance(np.full((2, 2), 255.0), out[:2, :2])
    assert np.allclose(white, 255.0)  # white stays white whatever colour the model drew
    pipe = _tiny_pipeline()
    picture = Image.fromarray(_icon(5)).resize((32, 32))
    kw = {"task": "colourise", "images": [picture], "steps": 1, "seed": 0, "height": 32, "width": 32}
    on = pipe("a fox", **kw)
    assert on.parameters["luminance_kept"] is True
    y = np.asarray(on.images[0].convert("L"), np.float32)
    assert np.abs(y - np.asarray(picture.convert("L"), np.float32)).max() <= 1.0  # rounding to 8 bits
    pipe.settings = PipelineConfig(colourise_keeps_luminance=False)
    off = pipe("a fox", **kw)
    assert off.parameters["luminance_kept"] is False
    assert np.abs(np.asarray(off.images[0].convert("L"), np.float32) - np.asarray(picture.convert("L"), np.float32)).mean() > 2.0
