"""Edit tab: instruction edit of a source image, or a masked edit where the user painted."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from seedling.ui.common import SafeImageEditor
from seedling.ui.fields import (
    NOT_RESTORED,
    Field,
    Upload,
    adapter_fields,
    guidance_field,
    prompt_fields,
    seed_field,
    steps_field,
)
from seedling.ui.tab import TabDef


def mask_from_layers(layers: list[Image.Image | None], size: tuple[int, int]) -> Image.Image | None:
    """255 wherever any painted layer is not transparent; None when nothing was painted."""
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for layer in layers:
        if layer is None:
            continue
        rgba = np.asarray(layer.convert("RGBA").resize(size, Image.NEAREST))
        mask |= rgba[..., 3] > 0
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L") if mask.any() else None


MASK_PAINT = (255, 0, 255, 255)  # the editor's brush colour: a restored mask looks as it was painted


def editor_value(source: Image.Image | str, mask: Image.Image | None = None) -> dict:
    """The editor's value for `source` with `mask` (white = change) painted back on as a layer,
    so the next Edit is the same masked edit (`mask_from_layers` reads the same mask back). A
    path (a result sent here) goes to the editor as it is."""
    if isinstance(source, str):
        return {"background": source, "layers": [], "composite": source}
    source = source.convert("RGBA")
    if mask is None:
        return {"background": source, "layers": [], "composite": source}
    painted = np.asarray(mask.convert("L").resize(source.size, Image.NEAREST)) > 127
    layer = np.zeros((source.height, source.width, 4), dtype=np.uint8)
    layer[painted] = MASK_PAINT
    layer_image = Image.fromarray(layer, mode="RGBA")
    return {
        "background": source,
        "layers": [layer_image],
        "composite": Image.alpha_composite(source, layer_image),
    }


def _editor(ctx):
    return SafeImageEditor(
        label="Source: paint over the part to change (leave unpainted to edit the whole image)",
        type="pil",
        image_mode="RGBA",
        sources=("upload", "clipboard"),
        layers=False,
        brush=gr.Brush(colors=["#ff00ff"], default_size=12),
        transforms=(),
        height=360,
        elem_id="edit-editor",
    )


def _source_and_mask(value) -> tuple[Image.Image | None, Image.Image | None]:
    background = (value or {}).get("background")
    if background is None:
        return None, None
    source = background.convert("RGB")
    return source, mask_from_layers((value or {}).get("layers") or [], source.size)


def _editor_inputs(value) -> tuple[Upload, Upload | None]:
    source, mask = _source_and_mask(value)
    if source is None:
        raise gr.Error("Add a source image first (upload one, or use 'Send to edit' in History).")
    return Upload(source), Upload(mask, "mask") if mask is not None else None


def _restore_editor(params, ctx):
    """The source with its mask painted back on: an inpaint image's next Edit is the same masked edit."""
    if params.get("source_image_id") is None:
        return NOT_RESTORED
    history = ctx.services.history
    try:
        source = history.open(params["source_image_id"])
        mask_id = params.get("mask_image_id")
        return editor_value(source, history.open(mask_id) if mask_id is not None else None)
    except Exception:  # noqa: BLE001 - deleted since: keep what the tab shows
        return NOT_RESTORED


def _draft(ctx, values, fields):
    source = fields["source_image_id"].image
    refusal = ctx.extras["sizes"].refusal(source.width, source.height, "The source image")
    if refusal:
        raise gr.Error(refusal + " Resize it, or send a result of this app.")
    fields = {**fields, "width": source.width, "height": source.height}
    return ("inpaint" if fields.get("mask_image_id") is not None else "edit"), fields


def _expand_for(values):
    """An instruction edit, or a masked edit when something is painted."""
    return ("inpaint" if _source_and_mask(values["editor_value"])[1] is not None else "edit"), None, None


ROWS = (
    Field(
        "editor_value",
        _editor,
        spec=("source_image_id", "mask_image_id"),
        to_spec=_editor_inputs,
        from_params=_restore_editor,
        required=True,
    ),
    *prompt_fields("instruction", "edit-instruction", "Instruction", "make the sky purple", 2),
    guidance_field("edit", "image_guidance", row="guidance"),
    guidance_field("edit", row="guidance"),
    steps_field("edit", row="sampling"),
    seed_field(row="sampling"),
    *adapter_fields(),
)

TAB = TabDef(
    name="edit",
    prefix="edit",
    run_label="Edit",
    rows=ROWS,
    prompt="instruction",
    expand_for=_expand_for,
    draft=_draft,
    expand_inputs=("editor_value",),
    compare=True,
    doc="""Edit a source image by instruction; a painted mask makes it a masked (inpaint) edit.

    With `prompt_expansion`, runs `expanded_prompt` (or expands the instruction when it is empty).""",
)
