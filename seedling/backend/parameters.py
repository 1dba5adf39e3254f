"""Job parameters as A1111-style PNG text, and back ("drop a PNG to restore its parameters")."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from seedling.backend.specs import CONTROL_KINDS, ImageJobSpec
from seedling.storage.pngmeta import format_parameters, parse_parameters

_ADAPTER_ITEM = re.compile(r"\(#(\d+)\):\s*(-?[\d.]+(?:e-?\d+)?)")


def adapters_text(spec: ImageJobSpec, names: list[str] | None) -> str | None:
    """ "pastel (#5): 0.8, ink (#7): 1" (names are plain: letters, digits, space _ . -)."""
    if not spec.adapters:
        return None
    names = names or [""] * len(spec.adapters)
    return ", ".join(
        f"{name} (#{use.adapter_id}): {use.strength:g}".lstrip() for use, name in zip(spec.adapters, names)
    )


def parse_adapters(text: str | None) -> list[tuple[int, float]]:
    return [(int(i), float(s)) for i, s in _ADAPTER_ITEM.findall(text or "")]


def boxes_text(boxes) -> str | None:
    """Compose's reference boxes as JSON, `[[x0, y0, x1, y1], null, ...]` (None without boxes): the
    text the Compose tab's Boxes field and its endpoint take."""
    if boxes is None:
        return None
    return json.dumps([None if box is None else [float(v) for v in box] for box in boxes])


def parse_boxes(text: str | None) -> list | None:
    """Boxes from `boxes_text` (unchecked: the spec checks them); None when there are none, or the
    text is no JSON list."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def parameters_text(
    spec: ImageJobSpec,
    *,
    output_index: int,
    steps: int,
    model: str,
    job_id: int,
    input_ids: list[int],
    adapter_names: list[str] | None = None,
) -> str:
    fields: dict[str, object] = {
        "Steps": steps,
        "CFG scale": spec.guidance,
        "Image CFG scale": getattr(spec, "image_guidance", None),
        "Seed": spec.seed,
        "Size": f"{spec.width}x{spec.height}",
        "Task": spec.task,
        "Kind": spec.kind,  # type: ignore[attr-defined]
        "Control": getattr(spec, "control", None),  # the Edit tab's mode (upscale_4x: Task says upscale)
        "Outputs": spec.num_outputs,
        "Output": output_index,
        "Model": model,
        "Adapters": adapters_text(spec, adapter_names),
        "Boxes": boxes_text(getattr(spec, "boxes", None)),
        "Job": job_id,
        "Inputs": " ".join(str(i) for i in input_ids) or None,
        "Typed prompt": spec.typed_prompt,  # prompt expansion on: the prompt line is the expanded one
    }
    return format_parameters(spec.prompt, fields)


@dataclass(frozen=True)
class RestoredParameters:
    prompt: str
    kind: str = "generate"
    steps: int | None = None
    guidance: float | None = None
    image_guidance: float | None = None
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    num_outputs: int | None = None
    adapters: tuple[tuple[int, float], ...] = ()  # (adapter id, strength)
    typed_prompt: str | None = None  # set when prompt expansion rewrote `prompt`
    boxes: list | None = None  # compose: each reference's box (or None), as the spec holds them
    control: str | None = None  # an edit that drew from the source's edges, sketch or gray, or upscaled it


def _int(fields: dict[str, str], key: str) -> int | None:
    try:
        return int(fields[key])
    except (KeyError, ValueError):
        return None


def _float(fields: dict[str, str], key: str) -> float | None:
    try:
        return float(fields[key])
    except (KeyError, ValueError):
        return None


def _control(fields: dict[str, str]) -> str | None:
    """An edit's mode: its Control field; before that field, the Task of an edges, sketch or
    colourise edit."""
    if fields.get("Kind") != "edit":
        return None
    for key in ("Control", "Task"):
        if fields.get(key) in CONTROL_KINDS:
            return fields[key]
    return None


def restore_parameters(text: str) -> RestoredParameters:
    """Parameters from a "parameters" text (ours or an A1111 one: unknown keys are ignored)."""
    prompt, fields = parse_parameters(text)
    width = height = None
    size = fields.get("Size", "")
    if "x" in size:
        w, _, h = size.partition("x")
        if w.isdigit() and h.isdigit():
            width, height = int(w), int(h)
    return RestoredParameters(
        prompt=prompt,
        kind=fields.get("Kind", "generate"),
        steps=_int(fields, "Steps"),
        guidance=_float(fields, "CFG scale"),
        image_guidance=_float(fields, "Image CFG scale"),
        seed=_int(fields, "Seed"),
        width=width,
        height=height,
        num_outputs=_int(fields, "Outputs"),
        adapters=tuple(parse_adapters(fields.get("Adapters"))),
        typed_prompt=fields.get("Typed prompt"),
        boxes=parse_boxes(fields.get("Boxes")),
        control=_control(fields),
    )
