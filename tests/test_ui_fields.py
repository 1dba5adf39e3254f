"""The tabs' field tables: every spec field a tab fills comes back from the stored spec and from the
PNG (the same values a person entered, in the tab that made the image), limits agree with the task
table, sizes with the model's config, and each result's actions."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from seedling.model.task_table import STUDIO_TASKS, TASKS
from seedling.ui import compose_tab, edit_tab, generate_tab, storyboard_tab
from seedling.ui.blocks import build_ui
from seedling.ui.fields import values_from_params
from seedling.ui.results import RESULT_ACTIONS, file_name, offered_actions, vary_spec
from seedling.ui.sizes import model_sizes
from tests.conftest import execute_next
from tests.test_ui import restore_ctx

TABLES = {
    "generate": generate_tab.ROWS,
    "edit": edit_tab.ROWS,
    "compose": compose_tab.ROWS,
    "storyboard": storyboard_tab.ROWS,
}


def _fn(demo, name):
    return next(fn.fn for fn in demo.fns.values() if fn.api_name == name)


def _run(services, demo, tab: str, **values):
    job_id = next(_fn(demo, tab)(**values))[0]
    execute_next(services.huey)
    return services.jobs.view(job_id).images[0]


def _picture(value) -> np.ndarray:
    return np.asarray((Image.open(value) if isinstance(value, str) else value).convert("RGB"))


def _inputs(services):
    teal = Image.new("RGB", (128, 128), "teal")
    layer = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    layer.paste((255, 0, 255, 255), (16, 32, 80, 96))
    adapters = {"adapters": [], "adapter_strength": 1.0}
    return {
        "generate": dict(prompt="a red circle", width=176, height=128, steps=3, guidance=2.5, seed=11, num_outputs=2, **adapters),
        "edit": dict(editor_value={"background": teal.convert("RGBA"), "layers": [layer]}, instruction="paint a sun",
                     image_guidance=1.5, guidance=2.0, steps=2, seed=12, **adapters),
        "compose": dict(ref1=teal, ref2=Image.new("RGB", (128, 128), "red"), mode="compose", prompt="a fox and a cat",
                        layout="custom", boxes="[[0.0, 0.125, 0.625, 0.75], null]", guidance=1.5, steps=2, seed=13,
                        **adapters),
        "storyboard": dict(story="a fox wakes\na fox sleeps", panels=2, character=teal, guidance=1.0, steps=2, seed=14, **adapters),
    }  # fmt: skip


@pytest.mark.parametrize("tab", list(TABLES))
def test_every_spec_field_comes_back_from_the_stored_spec_and_from_the_png(services, tab):
    demo = build_ui(services)
    entered = _inputs(services)[tab]
    image = _run(services, demo, tab, **entered)
    ctx = restore_ctx(services)
    from_spec = values_from_params(TABLES[tab], image.params, ctx)
    built = demo.generation_tabs[tab]
    drop = next(fn for fn in demo.fns.values() if fn.name == "restore_png" and fn.inputs[0] is built.png_drop)
    dropped = drop.fn(str(services.history.path(image)))
    by_name = {name: dropped[c] for name, c in built.table.components.items() if c in dropped}
    for row in TABLES[tab]:
        if row.name == "adapter_strength" and not entered["adapters"]:
            continue  # one strength for all adapters: with none applied it has nothing to restore
        for restored in (from_spec, by_name):
            assert row.name in restored, f"{tab}: {row.name} is not restored"
            got, want = restored[row.name], entered.get(row.name, row.default)
            if row.name == "editor_value":
                assert np.array_equal(
                    _picture(got["background"])[..., :3], _picture(want["background"])[..., :3]
                )
            elif row.name == "mask":  # what was painted comes back in the mask box
                painted = edit_tab.mask_from_layers(entered["editor_value"]["layers"], got.size)
                assert np.array_equal(np.asarray(got) > 127, np.asarray(painted) > 127)
            elif isinstance(want, Image.Image) or (
                want is None and row.name.startswith(("ref", "character"))
            ):
                assert (got is None) == (want is None) and (
                    want is None or np.array_equal(_picture(got), _picture(want))
                )
            elif row.name == "size":
                assert got == "4:3"  # 176x128
            else:
                assert got == want, f"{tab}: {row.name}"


def test_sliders_reach_the_task_tables_limits(services):
    demo = build_ui(services)
    for name, tab in demo.generation_tabs.items():
        task = {"generate": "t2i"}.get(name, name)
        limits = TASKS[task].limits
        assert tab["steps"].maximum == limits.steps.hi and tab["guidance"].maximum == limits.guidance.hi
        if "image_guidance" in tab.table.components:
            assert tab["image_guidance"].maximum == limits.image_guidance.hi
    story = demo.generation_tabs["storyboard"]["panels"]
    assert (story.minimum, story.maximum) == (TASKS["storyboard"].outputs.lo, TASKS["storyboard"].outputs.hi)


def test_sizes_are_the_models_and_others_are_refused_with_a_sentence(services):
    sizes = model_sizes("assets/default")
    assert sizes.side == 128 and sizes.grid == 16 and sizes.sizes["1:1"] == (128, 128)
    assert all(min(size) == 128 and max(size) % 16 == 0 for size in sizes.sizes.values())
    demo = build_ui(services)
    radio = demo.generation_tabs["generate"]["size"]
    offered = {value for _, value in radio.choices}
    assert offered == set(model_sizes(services.settings.model_path).sizes)
    generate = _fn(demo, "generate")
    with pytest.raises(gr.Error, match="512x512 is not one this model draws"):
        next(generate(prompt="a fox", width=512, height=512))
    with pytest.raises(gr.Error, match="multiple of 16"):
        next(generate(prompt="a fox", width=120, height=128))
    edit = _fn(demo, "edit")
    big = {"background": Image.new("RGBA", (256, 256), "white"), "layers": []}
    with pytest.raises(gr.Error, match="source image 256x256 is not one this model draws"):
        next(edit(editor_value=big, instruction="x"))


def test_download_names_read_as_the_prompt_and_seed():
    assert file_name("Red circle, top-left!", 123) == "red-circle-top-left_seed123.png"
    assert file_name("", 5) == "image_seed5.png"
    assert file_name("a b c d e f g h", 1) == "a-b-c-d-e-f_seed1.png"


def test_download_copies_live_in_the_apps_upload_folder_and_stay_bounded(services, tmp_path, monkeypatch):
    """The app puts Gradio's upload folder in its data folder; the readable copies go there, and
    however many results are offered only the most recently offered few are kept."""
    import os
    import time

    from seedling.ui import results

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "data" / "gradio"))
    monkeypatch.setattr(results, "MAX_DOWNLOAD_COPIES", 3)
    images = [services.history.store_input(Image.new("RGB", (16, 16), (i * 40, 0, 0))) for i in range(5)]
    copies = []
    for i, image in enumerate(images[:3]):
        copies.append(results.readable_copy(services, image))
        os.utime(copies[-1].parent, (time.time() - 100 + i, time.time() - 100 + i))  # offered in order
    root = tmp_path / "data" / "gradio" / "seedling-downloads"
    assert all(copy.parent.parent == root and copy.name == "image.png" for copy in copies)
    assert _picture(str(copies[0])).tolist() == _picture(str(services.history.path(images[0]))).tolist()
    results.readable_copy(services, images[0])  # offered again: now the most recent
    for image in images[3:]:
        results.readable_copy(services, image)
    kept = {folder.name for folder in root.iterdir()}
    assert kept == {image.sha256[:32] for image in (images[0], images[3], images[4])}


def test_result_actions_follow_the_task_table(services):
    """An action is offered when its task is one of the studio's (a job kind): the table's upscale
    task is model-side only so far, so there is no Upscale button."""
    offered = {a.name for a in offered_actions()}
    assert offered == {a.name for a in RESULT_ACTIONS if a.task is None or a.task in STUDIO_TASKS}
    assert "upscale" in TASKS and "upscale" not in offered
    demo = build_ui(services)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    for prefix in ("gen", "edit", "compose", "story"):
        assert {f"{prefix}-{name}" for name in offered} | {f"{prefix}-download"} <= ids
        assert f"{prefix}-upscale" not in ids
    assert "edit-compare" in ids and "gen-compare" not in ids


def test_vary_is_the_same_job_with_a_new_seed(services):
    demo = build_ui(services)
    image = _run(services, demo, "edit", **_inputs(services)["edit"])
    varied = vary_spec(services, image)
    original = {k: v for k, v in image.params.items() if k in type(varied).model_fields}
    assert varied.kind == "inpaint" and varied.seed != image.params["seed"]
    assert varied.model_dump(exclude={"seed"}) == {k: v for k, v in original.items() if k != "seed"} | {
        "adapters": []
    }
