"""Prompt expansion in the app: the job carries the typed and the expanded prompt into history and
PNG metadata; every generation tab has the toggle, the Expand button and the editable box; a
prompt that is not grounded queues nothing."""

from __future__ import annotations

import gradio as gr
import pytest

from seedling.backend.prompt_expansion import NotGrounded, PromptExpansionService, notes_markdown
from seedling.backend.specs import make_spec, parse_spec, spec_json
from seedling.model.prompt_expansion.result import PASSTHROUGH, REWRITE, ExpansionResult, Match
from seedling.storage.images_common import ImageQuery
from seedling.ui import compose_tab, edit_tab, generate_tab, storyboard_tab
from seedling.ui.blocks import build_ui
from seedling.ui.fields import values_from_params
from tests.conftest import execute_next
from tests.test_ui import restore_ctx


class FakeExpander:
    """Grounds "kitty" as "a cat", passes "a fox" through, grounds nothing else."""

    name = "fake"

    def __init__(self):
        self.calls: list[tuple] = []

    def expand(self, prompt, task="t2i", num_outputs=None, n_refs=None):
        self.calls.append((prompt, task, num_outputs, n_refs))
        if prompt == "a fox":
            return ExpansionResult(prompt, prompt, task, PASSTHROUGH, True, expander=self.name)
        if "kitty" in prompt:
            out = (
                "a storyboard of a cat: on a green background, then on a purple background"
                if task == ("storyboard")
                else "a cat"
            )
            return ExpansionResult(
                prompt,
                out,
                task,
                REWRITE,
                True,
                num_outputs=2 if task == "storyboard" else None,
                matches=[Match("kitty", "icon", "cat", 0.84)],
                expander=self.name,
            )
        return ExpansionResult(
            prompt, prompt, task, REWRITE, False, notes=["Not grounded: nothing close."], expander=self.name
        )


@pytest.fixture
def fake(services) -> FakeExpander:
    expander = FakeExpander()
    services.expansion = PromptExpansionService(factory=lambda folder: expander)
    return expander


def _fn(demo, api_name):
    return next(fn.fn for fn in demo.fns.values() if fn.api_name == api_name)


def _submitted_spec(services, first_yield):
    job_id = first_yield[0]
    return parse_spec(services.jobs.view(job_id).job.spec)


def test_spec_keeps_the_typed_prompt():
    spec = make_spec("generate", prompt="a cat", typed_prompt="a little kitty")
    assert parse_spec(spec_json(spec)) == spec
    assert make_spec("generate", prompt="a cat").typed_prompt is None


def test_history_and_png_keep_typed_and_expanded_prompts(services):
    job = services.jobs.submit(
        make_spec("generate", prompt="a cat", typed_prompt="a little kitty, please", seed=3)
    )
    execute_next(services.huey)
    image = services.jobs.view(job.id).images[0]
    assert (image.prompt, image.params["typed_prompt"]) == ("a cat", "a little kitty, please")
    restored = services.history.parameters_from_png(services.history.path(image))
    assert (restored.prompt, restored.typed_prompt) == ("a cat", "a little kitty, please")
    # Reuse / PNG drop: the typed prompt in the prompt box, expansion on, the expanded prompt in its box.
    for params in (vars(restored), image.params):
        values = values_from_params(generate_tab.ROWS, params, restore_ctx(services))
        assert (values["prompt"], values["prompt_expansion"], values["expanded_prompt"]) == (
            "a little kitty, please",
            True,
            "a cat",
        )
    assert services.history.search(ImageQuery(text="cat"))  # history search finds the prompt that ran


def test_resolve_off_edited_fresh_and_not_grounded(services, fake):
    exp = services.expansion
    assert exp.resolve("a little kitty", False, "ignored", "t2i").typed_prompt is None
    edited = exp.resolve("a little kitty", True, "  a cat face ", "t2i")
    assert (edited.prompt, edited.typed_prompt, edited.result) == ("a cat face", "a little kitty", None)
    fresh = exp.resolve("a little kitty", True, "", "t2i")
    assert (fresh.prompt, fresh.typed_prompt) == ("a cat", "a little kitty") and fresh.result.grounded
    with pytest.raises(NotGrounded, match="Not grounded"):
        exp.resolve("quantum entanglement", True, "", "t2i")


def test_every_generation_tab_has_the_expansion_box_and_an_expand_endpoint(services, fake):
    demo = build_ui(services)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    for prefix in ("gen", "edit", "compose", "story"):
        assert {f"{prefix}-pe", f"{prefix}-pe-expand", f"{prefix}-pe-expanded", f"{prefix}-pe-notes"} <= ids
    result = _fn(demo, "expand_prompt")("a little kitty", "t2i")
    assert result["prompt"] == "a cat" and result["grounded"]


def test_expand_button_fills_the_editable_box_or_says_not_grounded(services, fake):
    demo = build_ui(services)
    on_expand = next(fn.fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "on_expand")
    enabled, box, notes = on_expand("a little kitty")  # the Generate tab's (built first)
    assert (enabled, box) == (True, "a cat") and "**cat** (0.84)" in notes
    enabled, box, notes = on_expand("quantum entanglement")
    assert box == "" and "Not grounded" in notes  # an empty box: Generate stops with the reason


def test_generate_runs_the_expanded_prompt_and_records_the_typed_one(services, fake):
    demo = build_ui(services)
    generate = _fn(demo, "generate")
    args = {"prompt": "a little kitty", "width": 128, "height": 128, "steps": 1, "guidance": 0, "seed": 7}
    off = _submitted_spec(services, next(generate(**args)))
    assert (off.prompt, off.typed_prompt) == ("a little kitty", None)
    fresh = next(generate(**args, prompt_expansion=True, expanded_prompt=""))
    spec = _submitted_spec(services, fresh)
    assert (spec.prompt, spec.typed_prompt) == ("a cat", "a little kitty")
    assert "expanded to “a cat”" in fresh[1]
    edited_yield = next(generate(**args, prompt_expansion=True, expanded_prompt="a cat face"))
    edited = _submitted_spec(services, edited_yield)
    assert (edited.prompt, edited.typed_prompt) == ("a cat face", "a little kitty")
    with pytest.raises(gr.Error, match="Nothing was generated"):
        next(
            generate(**{**args, "prompt": "quantum entanglement"}, prompt_expansion=True, expanded_prompt="")
        )
    with pytest.raises(LookupError):  # no job was stored for the prompt that is not grounded
        services.jobs.get(edited_yield[0] + 1)


def test_storyboard_takes_its_panel_count_from_the_expansion(services, fake):
    demo = build_ui(services)
    storyboard = _fn(demo, "storyboard")
    spec = _submitted_spec(
        services,
        next(storyboard(story="a kitty plays, then sleeps", panels=4, seed=1, prompt_expansion=True)),
    )
    assert spec.num_outputs == 2 and spec.prompt.startswith("a storyboard of a cat")
    assert fake.calls[-1] == ("a kitty plays, then sleeps", "storyboard", 4, None)
    restored = values_from_params(storyboard_tab.ROWS, spec.model_dump(), restore_ctx(services))
    assert restored["story"] == "a kitty plays, then sleeps"


def test_edit_and_compose_expand_for_their_task(services, fake):
    from PIL import Image

    demo = build_ui(services)
    source = Image.new("RGBA", (128, 128), "white")
    editor = {"background": source, "layers": []}
    next(_fn(demo, "edit")(editor_value=editor, instruction="kitty", steps=1, seed=1, prompt_expansion=True))
    assert fake.calls[-1][:2] == ("kitty", "edit")
    ref = Image.new("RGB", (128, 128), "white")
    spec = _submitted_spec(
        services,
        next(
            _fn(demo, "compose")(
                mode="compose", prompt="a kitty", steps=1, seed=1, ref1=ref, ref2=ref, prompt_expansion=True
            )
        ),
    )
    assert fake.calls[-1] == ("a kitty", "compose", None, 2) and spec.typed_prompt == "a kitty"
    ctx = restore_ctx(services)
    restored = values_from_params(edit_tab.ROWS, spec.model_dump(), ctx)
    assert (restored["prompt_expansion"], restored["expanded_prompt"]) == (True, "a cat")
    restored = values_from_params(compose_tab.ROWS, {"prompt": "x"}, ctx)
    assert (restored["prompt_expansion"], restored["expanded_prompt"]) == (False, "")


def test_notes_say_not_grounded():
    bad = ExpansionResult("x", "x", "t2i", REWRITE, False, notes=["Not grounded: nothing close."])
    assert "Not grounded" in notes_markdown(bad)
    good = ExpansionResult(
        "a kitty", "a cat", "t2i", REWRITE, True, matches=[Match("kitty", "icon", "cat", 0.84)]
    )
    assert "**cat** (0.84)" in notes_markdown(good)


def test_app_expands_through_gradio_client_and_the_png_keeps_both_prompts(tmp_path_factory, tiny_model_dir):
    """The real path: `python app.py`, the grounded expander (MiniLM) loaded in the app process."""
    from gradio_client import Client
    from PIL import Image

    from seedling.backend.parameters import restore_parameters
    from seedling.storage.pngmeta import read_parameters
    from tests.conftest import AppProcess

    app = AppProcess(tmp_path_factory.mktemp("pe-app") / "data", tiny_model_dir).start()
    try:
        client = Client(app.url, verbose=False)
        expanded = client.predict(prompt="a cheerful fox waving", task="t2i", api_name="/expand_prompt")
        assert (expanded["prompt"], expanded["grounded"]) == ("a fox", True)
        status, _preview, gallery = client.predict(
            prompt="a cheerful fox waving",
            width=128,
            height=128,
            steps=1,
            guidance=0,
            seed=5,
            num_outputs=1,
            prompt_expansion=True,
            api_name="/generate",
        )
        assert "done" in status and "expanded to “a fox”" in status
        with Image.open(gallery[0]["image"]) as png:
            restored = restore_parameters(read_parameters(png))
        assert (restored.prompt, restored.typed_prompt) == ("a fox", "a cheerful fox waving")
    finally:
        app.stop()
