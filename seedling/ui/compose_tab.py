"""Compose tab: 1-4 reference images and a prompt (or one image as a style reference), and where
each reference goes (a layout, or boxes placed by hand: ui/compose_boxes.py)."""

from __future__ import annotations

import gradio as gr

from seedling.model.task_table import TASKS
from seedling.ui import compose_boxes
from seedling.ui.common import Radio, SafeImage
from seedling.ui.fields import (
    Field,
    Upload,
    image_from_id,
    prompt_fields,
    sampling_fields,
)
from seedling.ui.tab import TabDef

SLOTS = int(TASKS["compose"].references.hi)
REFS = tuple(f"ref{i + 1}" for i in range(SLOTS))


def _ref(index: int) -> Field:
    def make(ctx):
        return SafeImage(
            type="pil", label=f"Reference {index + 1}", height=140, elem_id=f"compose-ref-{index}"
        )

    def restore(params, ctx):
        if params.get("kind") == "style":
            return image_from_id(params, ctx, "style_image_id") if index == 0 else None
        return image_from_id(params, ctx, "reference_image_ids", index)

    return Field(REFS[index], make, from_params=restore, row="refs")


def _mode(ctx):
    return Radio(
        ["compose", "style"],
        value="compose",
        label="Mode",
        info="style: restyle the prompt after one reference image",
    )


def _draft(ctx, values, fields):
    images = [Upload(values[name]) for name in REFS if values[name] is not None]
    if not images:
        raise gr.Error("Add at least one reference image.")
    if values["mode"] == "style":
        if len(images) != 1:
            raise gr.Error("Style mode takes exactly one reference image.")
        if fields.pop("boxes", None) is not None:
            raise gr.Error("Style mode places no boxes: set Layout to free (no boxes) and clear the boxes.")
        return "style", {**fields, "style_image_id": images[0]}
    return "compose", {**fields, "reference_image_ids": images}


def _expand_for(values):
    n = sum(values[name] is not None for name in REFS)
    return ("style" if values["mode"] == "style" else "compose"), None, n or None


ROWS = (
    *(_ref(i) for i in range(SLOTS)),
    Field(
        "mode",
        _mode,
        default="compose",
        from_params=lambda p, c: "style" if p.get("kind") == "style" else "compose",
    ),
    *prompt_fields("prompt", "compose-prompt", "Prompt", "the cat from 1 sitting on the sofa from 2", 2),
    *compose_boxes.fields(REFS),
    *sampling_fields("compose"),
)

TAB = TabDef(
    name="compose",
    prefix="compose",
    run_label="Compose",
    rows=ROWS,
    prompt="prompt",
    expand_for=_expand_for,
    draft=_draft,
    expand_inputs=("mode", "layout", "boxes", *REFS),
    from_expansion=compose_boxes.from_expansion,
    wire=lambda tab: compose_boxes.wire(tab, REFS),
    doc="""Compose 1-4 reference images as the prompt describes (mode "style": exactly one image).

    `boxes`: where each reference goes, JSON text with one [x0, y0, x1, y1] (fractions of the
    picture) or null per reference, in order; empty: the `layout`'s boxes ("side by side", "top and
    bottom", "grid 2x2"), or none for "free (no boxes)". With `prompt_expansion`, runs
    `expanded_prompt` (or expands `prompt` when it is empty).""",
)
