"""Generate tab: text to image."""

from __future__ import annotations

import json

import gradio as gr

from seedling.model.task_table import TASKS
from seedling.ui.common import PRIVATE, Number, Radio, Slider, whole
from seedling.ui.fields import (
    NOT_RESTORED,
    Field,
    adapter_fields,
    guidance_field,
    prompt_fields,
    seed_field,
    steps_field,
    whole_field,
)
from seedling.ui.tab import TabDef


def _size_radio(ctx):
    sizes = ctx.extras["sizes"]
    choices = [(f"{name}  ({w}x{h})", name) for name, (w, h) in sizes.sizes.items()]
    return Radio(
        choices, value="1:1", label=f"Size (the model draws {sizes.side} px)", elem_id=f"{ctx.prefix}-size"
    )


def _side(name: str):
    def make(ctx):
        # set by the Size choice; a number field so API callers pass any size and hear why it is refused
        return Number(value=ctx.extras["sizes"].side, precision=None, label=name.title(), visible=False)

    return make


def _size_label(params, ctx):
    """The offered size the params name; any other size leaves the choice (and the width and
    height it sets) as it is, and `_restore_note` says why."""
    label = ctx.extras["sizes"].label(params.get("width"), params.get("height"))
    return label if label is not None else NOT_RESTORED


def _offered_side(name: str):
    def restore(params, ctx):
        return params[name] if _size_label(params, ctx) is not NOT_RESTORED else NOT_RESTORED

    return restore


def _side_field(name: str) -> Field:
    return Field(name, _side(name), spec=name, default=128, to_spec=whole, from_params=_offered_side(name))


def _restore_note(params, ctx) -> str | None:
    """A restored size the model does not draw (a PNG of another model or tool): the sentence."""
    width, height = params.get("width"), params.get("height")
    if width is None or height is None:
        return None
    refusal = ctx.extras["sizes"].refusal(width, height, "Its size")
    return refusal and f"{refusal} The size choice was left as it was."


def _num_outputs(ctx):
    outputs = TASKS["t2i"].outputs
    return Slider(outputs.lo, outputs.hi, value=1, step=1, label="Images")


def _draft(ctx, values, fields):
    refusal = ctx.extras["sizes"].refusal(fields["width"], fields["height"])
    if refusal:
        raise gr.Error(refusal)
    return "generate", fields


def _wire(tab) -> None:
    sizes = tab.extras["sizes"].sizes
    # In the browser, with no round trip to the server: a Generate click right after a Size click
    # must already see the new width and height (it once drew the size chosen before).
    tab["size"].change(
        None,
        [tab["size"], tab["width"], tab["height"]],
        [tab["width"], tab["height"]],
        js=f"(name, w, h) => ({json.dumps({name: list(wh) for name, wh in sizes.items()})})[name] || [w, h]",
        api_visibility=PRIVATE,
        queue=False,
    )


ROWS = (
    *prompt_fields("prompt", "gen-prompt", "Prompt", "a red fox in the snow", 3),
    Field("size", _size_radio, default="1:1", from_params=_size_label),
    _side_field("width"),
    _side_field("height"),
    steps_field("t2i", row="sampling"),
    guidance_field("t2i", row="sampling"),
    seed_field(row="seed"),
    whole_field("num_outputs", _num_outputs, default=1, row="seed"),
    *adapter_fields(),
)

TAB = TabDef(
    name="generate",
    prefix="gen",
    run_label="Generate",
    rows=ROWS,
    prompt="prompt",
    expand_for=lambda values: ("t2i", None, None),
    draft=_draft,
    wire=_wire,
    restore_note=_restore_note,
    doc="""Text to image. Returns the status line, the last preview and the result gallery.

    With `prompt_expansion`, runs `expanded_prompt` (or expands `prompt` when it is empty).""",
)
