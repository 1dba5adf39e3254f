"""The task table is the one source of task limits: torch-free, and the pipeline and job specs agree with it."""

import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from seedling.model.task_table import (
    CONTROL_TASKS,
    STUDIO_TASKS,
    TASK_NAMES,
    TASKS,
    Limits,
    check_size,
    max_outputs,
    size_grid,
    size_grid_of,
    size_ok,
    task_spec,
)


def test_import_is_torch_free():
    code = "import sys, seedling.model.task_table; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_tasks_match_the_model_and_storage_roles():
    from seedling.model.dit import TASKS as MODEL_TASKS
    from seedling.storage.images_common import Role

    assert TASK_NAMES == MODEL_TASKS
    roles = set(typing.get_args(Role))
    for t in TASKS.values():
        assert set(t.roles) <= roles
        assert t.outputs.contains(t.default_outputs)
        assert t.ui_tab in ("generate", "edit", "compose", "storyboard") or (t.control and t.ui_tab is None)
    assert task_spec("inpaint").mask and not task_spec("edit").mask
    assert task_spec("compose").role_of(3) == "reference"
    with pytest.raises(ValueError, match="unknown task 'paint'"):
        task_spec("paint")


def test_size_grid_from_config():
    assert size_grid({"channels": [32, 64, 128]}, {"patch": 2}) == 16
    assert size_grid({"channels": [8, 16]}, {"patch": 1}) == 4
    assert size_grid_of("assets/default") == 16
    check_size(128, 96, 16)
    for h, w in ((120, 128), (0, 128), (128, 2048), (128.0, 128), (True, 128)):
        with pytest.raises(ValueError, match="multiple of 16"):
            check_size(h, w, 16)
    assert size_ok(1024, 16, 16) and not size_ok(1040, 16, 16)


def test_size_grid_of_a_deep_compression_folder(tmp_path):
    """A folder with the f32 autoencoder (its stages are `enc_channels`) has a 64 px grid at patch 2,
    and the tabs offer its native size on that grid."""
    from seedling.model.dcae import DCAutoencoder
    from seedling.ui.sizes import model_sizes

    DCAutoencoder.from_named("tiny-f32").save_pretrained(tmp_path / "autoencoder")
    (tmp_path / "dit").mkdir()
    (tmp_path / "dit" / "config.json").write_text(json.dumps({"patch": 2}))
    (tmp_path / "pipeline.json").write_text(json.dumps({"default_size": 512}))
    assert size_grid_of(tmp_path) == 64
    sizes = model_sizes(tmp_path)
    assert sizes.grid == 64 and sizes.sizes["1:1"] == (512, 512)
    assert all(w % 64 == 0 and h % 64 == 0 for w, h in sizes.sizes.values())
    assert "multiple of 64" in sizes.refusal(528, 512)
    with pytest.raises(KeyError, match="names no stages"):
        size_grid({"latent_channels": 8}, {"patch": 2})


def test_job_specs_agree_with_the_table():
    """The job specs users submit and the table give the same limits (a field's bounds per task)."""
    from seedling.backend import specs

    lim = Limits()
    kinds = {"t2i": specs.GenerateSpec, "edit": specs.EditSpec, "inpaint": specs.InpaintSpec,
             "compose": specs.ComposeSpec, "storyboard": specs.StoryboardSpec, "style": specs.StyleSpec}
    assert set(kinds) == set(STUDIO_TASKS)  # the control tasks have no job kind yet

    def bounds(cls, field):
        meta = cls.model_fields[field].metadata
        lo = next(m.ge for m in meta if hasattr(m, "ge"))
        hi = next(m.le for m in meta if hasattr(m, "le"))
        return lo, hi

    for task, cls in kinds.items():
        t = task_spec(task)
        assert cls.model_fields["num_outputs"].default == t.default_outputs, task
        assert bounds(cls, "num_outputs") == (t.outputs.lo, t.outputs.hi), task
        assert bounds(cls, "steps") == (lim.steps.lo, lim.steps.hi), task
        assert bounds(cls, "guidance") == (lim.guidance.lo, lim.guidance.hi), task
        assert bounds(cls, "height")[1] == lim.side.hi, task
        assert len(cls.model_fields) and cls(**_minimal(cls)).task == task
    compose_refs = specs.ComposeSpec.model_fields["reference_image_ids"].metadata
    assert (next(m.min_length for m in compose_refs if hasattr(m, "min_length")),
            next(m.max_length for m in compose_refs if hasattr(m, "max_length"))) == (1, 4)
    assert task_spec("compose").references.hi == 4
    assert max_outputs() == 6


def _minimal(cls):
    fields = {"prompt": "x"}
    for name in ("source_image_id", "mask_image_id", "style_image_id"):
        if name in cls.model_fields:
            fields[name] = 1
    if "reference_image_ids" in cls.model_fields:
        fields["reference_image_ids"] = [1]
    return fields


def test_pipeline_reads_the_table():
    import numpy as np

    from seedling.model.pipeline import SeedlingPipeline

    pipe = SeedlingPipeline.from_config("tiny")
    with pytest.raises(ValueError, match="from 1 to 4"):
        pipe(prompt="x", num_outputs=5, steps=1, height=32, width=32)
    with pytest.raises(ValueError, match="from 2 to 6"):
        pipe(prompt="x", task="storyboard", num_outputs=1, steps=1, height=32, width=32)
    with pytest.raises(ValueError, match="steps must be a whole number from 1 to 100"):
        pipe(prompt="x", steps=101, height=32, width=32)
    with pytest.raises(ValueError, match=f"multiple of {pipe.grid}"):
        pipe(prompt="x", steps=1, height=pipe.grid + 1, width=32)
    res = pipe(prompt="x", task="storyboard", steps=1, height=32, width=32, seed=0)
    assert len(res.images) == task_spec("storyboard").default_outputs
    assert np.asarray(res.images[0]).shape == (32, 32, 3)



def test_control_tasks_are_model_side_tasks_of_the_table():
    """Edges, sketch, colourise and upscale: one control picture in, at the output's positions;
    the studio offers them once they have a job kind (no tab, no Upscale button yet)."""
    from seedling.ui.blocks import TAB_FOR_KIND
    from seedling.ui.results import offered_actions

    assert CONTROL_TASKS == ("edges", "sketch", "colourise", "upscale", "text")
    assert STUDIO_TASKS == TASK_NAMES[:6]
    for name in CONTROL_TASKS:
        t = task_spec(name)
        role = "glyph" if name == "text" else "control"  # text's control is the prompt's text, drawn
        assert t.control and t.ui_tab is None and t.roles == (role,) and t.references == t.references.__class__(1, 1)
        assert name not in TAB_FOR_KIND
    assert task_spec("edges").keeps_source_size and not task_spec("upscale").keeps_source_size
    assert "upscale" not in {a.name for a in offered_actions()}
    # the shipped model knows the six studio tasks, text and the four control tasks; a model
    # folder's DiT config says which it has
    shipped = json.loads(Path("assets/default/dit/config.json").read_text())["tasks"]
    assert shipped == [*STUDIO_TASKS, "text", "edges", "sketch", "colourise", "upscale"]
