"""Job runners: the code that does a job, given its context and spec. One per job family,
looked up by the spec's kind in RUNNERS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from seedling.backend.adapter_cache import AdapterCache
from seedling.backend.context import JobContext, OutputImage, Stopwatch
from seedling.backend.errors import JobCancelled
from seedling.backend.model_host import ModelHost
from seedling.backend.parameters import parameters_text
from seedling.backend.specs import IMAGE_JOB_KINDS, UPSCALE_KINDS, ImageJobSpec
from seedling.storage.images_common import ParentLink

# (context, spec, model host) -> timings in seconds
Runner = Callable[[JobContext, Any, ModelHost], dict[str, float]]

_adapters = AdapterCache()

# The spec's fields that SeedlingPipeline.__call__ takes under the same names (only edit and
# inpaint specs have image_guidance: None for the others).
PIPELINE_ARGS = (
    "prompt", "task", "num_outputs", "steps", "guidance", "image_guidance", "seed", "height", "width",
    "boxes",  # compose: where each reference goes
)  # fmt: skip


def load_adapters(ctx: JobContext, spec: ImageJobSpec) -> tuple[list[tuple[Any, float]], list[str]]:
    """The spec's adapters, loaded, with their strengths; and their names (for PNG text and history)."""
    loaded, names = [], []
    for use in spec.adapters:
        record, path = ctx.adapter(use.adapter_id)
        loaded.append((_adapters.load(path, record.sha256), use.strength))
        names.append(record.name)
    return loaded, names


# At most one progress preview this often (seconds), the first this long into the job: a preview
# costs a decode and a stored PNG, and a job done sooner shows its result instead.
PREVIEW_EVERY_S = 0.5


def prepare_control(kind: str, picture) -> tuple[list, bool]:
    """The control a `kind` job runs on, from its source picture: an edge map or a sketch as it is,
    any other picture traced the way training traced its controls (model/data/controls.as_control);
    and whether it was traced (the image's params say so). An upscale's control is the picture."""
    import numpy as np
    from PIL import Image

    from seedling.model.data.controls import as_control

    if kind in UPSCALE_KINDS:
        return [picture.convert("RGB")], False

    control, traced = as_control(kind, np.asarray(picture.convert("RGB")))
    return [Image.fromarray(control)], traced


def run_image_job(ctx: JobContext, spec: ImageJobSpec, model: ModelHost) -> dict[str, float]:
    from seedling.model.adapters import remove_adapters, set_adapters

    pipe = model.get()
    adapters, adapter_names = load_adapters(ctx, spec)
    inputs = spec.inputs()
    images = [ctx.load_image(image_id) for image_id, _ in inputs] or None
    traced = None
    if getattr(spec, "control", None) is not None:  # an ordinary picture is traced first (edges, sketch)
        factor = UPSCALE_KINDS.get(spec.control)
        w0, h0 = images[0].size
        if factor is not None and (w0 * factor, h0 * factor) != (spec.width, spec.height):
            raise ValueError(f"an upscale {factor}x of this {w0}x{h0} picture is {w0 * factor}x{h0 * factor}, "
                             f"not {spec.width}x{spec.height}: ask that size")
        images, traced = prepare_control(spec.control, images[0])
    mask = ctx.load_image(spec.mask_id, mode="L") if spec.mask_id is not None else None
    steps = spec.steps or pipe.default_steps
    stop_asked = False

    def on_step(step: int, total: int, preview) -> bool | None:
        nonlocal stop_asked
        ctx.progress(step, total, preview)
        if ctx.cancel_requested():
            stop_asked = True
            return False
        return None

    set_adapters(pipe.dit, adapters)  # merged for this job only; the exact weights come back after
    try:
        sampling = {name: getattr(spec, name, None) for name in PIPELINE_ARGS}
        # the studio expands prompts itself, visibly (the Prompt expansion toggle): a job runs its
        # prompt as the job says
        result = pipe(images=images, mask=mask, callback=on_step, expand_prompt=False, previews=PREVIEW_EVERY_S,
                      **sampling)
    except Exception:
        if stop_asked:  # the pipeline raised GenerationCancelled because we asked it to stop
            raise JobCancelled() from None
        raise
    finally:
        remove_adapters(pipe.dit)

    save = Stopwatch()
    input_ids = [image_id for image_id, _ in inputs]
    params = spec.model_dump(mode="json") | {
        "steps": steps,
        "model": model.name,
        "adapter_names": adapter_names,
    }
    if traced is not None:
        params["control_traced"] = traced
    if result.parameters.get("boxes") is not None:  # compose without boxes: the pipeline read them off the prompt
        params["placed_boxes"] = result.parameters["boxes"]
    if result.parameters.get("by_panels"):  # a storyboard drawn panel by panel from one picture of its character
        params |= {k: result.parameters[k] for k in ("by_panels", "character", "panel_prompts", "panel_edits")}
    outputs = [
        OutputImage(
            image=image,
            output_index=i,
            parameters=parameters_text(
                spec,
                output_index=i,
                steps=steps,
                model=model.name,
                job_id=ctx.job_id,
                input_ids=input_ids,
                adapter_names=adapter_names,
            ),
            seed=spec.seed,
            task=spec.task,
            prompt=spec.prompt,
            params=params,
            adapter_id=spec.adapter_id,
            timings=dict(result.timings),
        )
        for i, image in enumerate(result.images)
    ]
    parents = [ParentLink(image_id, role, position) for position, (image_id, role) in enumerate(inputs)]
    if spec.mask_id is not None:
        parents.append(ParentLink(spec.mask_id, "mask", 0))
    ctx.save_outputs(outputs, parents, link_siblings=spec.task == "storyboard")
    ctx.progress(steps, steps)
    return {**{k: float(v) for k, v in result.timings.items()}, "save": save.elapsed()}


def _run_finetune(ctx: JobContext, spec: Any, model: ModelHost) -> dict[str, float]:
    from seedling.backend.finetune_runner import run_finetune_job  # torch, peft, accelerate: worker only

    return run_finetune_job(ctx, spec, model)


RUNNERS: dict[str, Runner] = {kind: run_image_job for kind in IMAGE_JOB_KINDS} | {"finetune": _run_finetune}
