"""Job parameters as A1111-style PNG text, and back ("drop a PNG to restore its parameters")."""

from __future__ import annotations

from dataclasses import dataclass

from backend.specs import ImageJobSpec
from storage.pngmeta import format_parameters, parse_parameters


def parameters_text(
    spec: ImageJobSpec, *, output_index: int, steps: int, model: str, job_id: int, input_ids: list[int]
) -> str:
    fields: dict[str, object] = {
        "Steps": steps,
        "CFG scale": spec.guidance,
        "Image CFG scale": getattr(spec, "image_guidance", None),
        "Seed": spec.seed,
        "Size": f"{spec.width}x{spec.height}",
        "Task": spec.task,
        "Kind": spec.kind,  # type: ignore[attr-defined]
        "Outputs": spec.num_outputs,
        "Output": output_index,
        "Model": model,
        "Adapter": spec.adapter_id,
        "Job": job_id,
        "Inputs": " ".join(str(i) for i in input_ids) or None,
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
    )
