"""Edit tab: instruction edit of a source image, or a masked edit where the user painted; or, in
the modes the model has, a new picture drawn on the source's edges or sketch lines, or the source
coloured (geometric control: the source is the control, the instruction box describes the picture),
or the source upscaled 2x or 4x (no instruction needed; above the model's native size the
pipeline draws it in tiles)."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from seedling.backend.specs import MAX_SIDE, UPSCALE_KINDS, control_task
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


def editor_value(source: Image.Image | str) -> dict:
    """The editor's value showing `source` (a picture, or the path of a result sent here)."""
    if not isinstance(source, str):
        source = source.convert("RGBA")
    return {"background": source, "layers": [], "composite": source}


def _mask_box(ctx):
    return gr.Image(
        type="pil",
        image_mode="L",
        sources=("upload",),
        # short: a long label covers the box's own "Click to Upload"; painting on the source
        # replaces this mask, clearing it (x) makes the next Edit a whole-image edit
        label="Mask (white = changes)",
        height=180,
        elem_id="edit-mask",
    )


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
        scale=3,
    )


def _source_and_mask(value, mask_box=None) -> tuple[Image.Image | None, Image.Image | None]:
    """The source, and the mask: what is painted on it, else the mask box's picture (both at the
    source's size, white = change); None where there is none."""
    background = (value or {}).get("background")
    if background is None:
        return None, None
    source = background.convert("RGB")
    mask = mask_from_layers((value or {}).get("layers") or [], source.size)
    if mask is None and mask_box is not None:
        mask = _mask_at(mask_box, source.size)
    return source, mask


def _mask_at(mask: Image.Image, size: tuple[int, int]) -> Image.Image | None:
    """A white-on-black mask at `size` (255 = change); None when it marks nothing."""
    white = np.asarray(mask.convert("L").resize(size, Image.NEAREST)) > 127
    return Image.fromarray(white.astype(np.uint8) * 255, mode="L") if white.any() else None


def _editor_inputs(value, mask_box=None) -> tuple[Upload, Upload | None]:
    source, mask = _source_and_mask(value, mask_box)
    if source is None:
        raise gr.Error("Add a source image first (upload one, or use 'Send to edit' in History).")
    return Upload(source), Upload(mask, "mask") if mask is not None else None


def _history_picture(params, ctx, key):
    """The stored picture `params[key]` names; None where there is none; NOT_RESTORED when it was
    deleted since (the tab keeps what it shows)."""
    if params.get("source_image_id") is None:
        return NOT_RESTORED  # not an edit: leave the tab as it is
    if params.get(key) is None:
        return None
    try:
        return ctx.services.history.open(params[key])
    except Exception:  # noqa: BLE001 - deleted since: keep what the tab shows
        return NOT_RESTORED


def _restore_editor(params, ctx):
    source = _history_picture(params, ctx, "source_image_id")
    return source if source is NOT_RESTORED or source is None else editor_value(source)


def _restore_mask(params, ctx):
    """An inpaint image's mask goes to the mask box (white = change): its next Edit is the same
    masked edit. (Gradio's editor loses a mask layer sent with a new source as often as not.)"""
    mask = _history_picture(params, ctx, "mask_image_id")
    return mask.convert("L") if isinstance(mask, Image.Image) else mask


# The Edit tab's modes: (label, control kind); "" is the instruction edit. A mode shows only when
# the model has its task (backend/specs.py CONTROL_KINDS).
MODES = (
    ("Edit by instruction", ""),
    ("Picture from its edges", "edges"),
    ("Picture from a sketch", "sketch"),
    ("Colourise", "colourise"),
    ("Upscale ×2", "upscale_2x"),
    ("Upscale ×4", "upscale_4x"),
)
MODE_INFO = ("Other than an edit: the source's lines (any picture is traced) or gray, and the instruction describes "
             "the picture; or the source upscaled (no instruction needed).")


def _mode(ctx):
    known = ctx.services.settings.model_tasks()
    choices = [(label, kind) for label, kind in MODES if not kind or known is None or control_task(kind) in known]
    return gr.Radio(choices, value="", label="Mode", info=MODE_INFO, visible=len(choices) > 1, elem_id="edit-mode")


def _draft(ctx, values, fields):
    source = fields["source_image_id"].image
    refusal = ctx.extras["sizes"].refusal(source.width, source.height, "The source image")
    if refusal:
        raise gr.Error(refusal + " Resize it, or send a result of this app.")
    if fields.get("control") and fields.get("mask_image_id") is not None:
        label = {kind: label for label, kind in MODES}[fields["control"]]
        raise gr.Error(f"'{label}' draws from the whole source and takes no mask: clear the painted mask "
                       "(and the mask box), or choose 'Edit by instruction' for a masked edit.")
    factor = UPSCALE_KINDS.get(fields.get("control") or "", 1)
    width, height = source.width * factor, source.height * factor
    if max(width, height) > MAX_SIDE:
        instead = "choose Upscale ×2, or a smaller source" if factor == 4 else "choose a smaller source"
        raise gr.Error(f"Upscaled {factor}x, this {source.width}x{source.height} source would be {width}x{height}, "
                       f"more than the {MAX_SIDE} px this app makes: {instead}.")
    fields = {**fields, "width": width, "height": height}
    return ("inpaint" if fields.get("mask_image_id") is not None else "edit"), fields


def _expand_for(values):
    """An instruction edit, or a masked edit when something is painted; a control mode's prompt
    describes a whole picture, as a Generate prompt does."""
    if values.get("control"):
        return "t2i", None, None
    return ("inpaint" if _source_and_mask(values["editor_value"], values["mask"])[1] is not None else "edit"), None, None


ROWS = (
    Field(
        "editor_value",
        _editor,
        spec=("source_image_id", "mask_image_id"),
        to_spec=_editor_inputs,
        reads=("mask",),
        from_params=_restore_editor,
        required=True,
        row="source",
    ),
    Field("mask", _mask_box, from_params=_restore_mask, row="source"),
    *prompt_fields("instruction", "edit-instruction", "Instruction", "make the sky purple", 2),
    # beside the guidance sliders: a row of its own pushed the Edit button below a 1000 px screen
    Field("control", _mode, spec="control", key="control", default="", to_spec=lambda v: v or None, row="guidance"),
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
    expand_inputs=("editor_value", "mask"),
    compare=True,
    doc="""Edit a source image by instruction; a painted mask makes it a masked (inpaint) edit. An
    instruction that quotes new text ('change the word to "SALE"') on a picture of a word rewrites
    the word where it stands, in its ink (the text task draws it; the rest stays as it was).

    With `prompt_expansion`, runs `expanded_prompt` (or expands the instruction when it is empty).""",
)
