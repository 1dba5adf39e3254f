"""Edit tab: instruction edit of a source image, or a masked edit where the user painted."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image

from seedling.backend.services import Services
from seedling.backend.specs import MAX_SIDE
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui.common import (
    PRIVATE,
    AdapterPicker,
    SafeImageEditor,
    Textbox,
    adapter_picker,
    adapter_uses,
    build_spec,
    cancel_handler,
    guidance_input,
    model_event,
    optional,
    resolve_seed,
    results_column,
    run_and_watch,
    run_buttons,
    seed_input,
    steps_input,
)


@dataclass
class EditTab:
    editor: gr.ImageEditor
    instruction: gr.Textbox
    image_guidance: gr.Slider
    guidance: gr.Slider
    steps: gr.Slider
    seed: gr.Number
    adapter_picker: AdapterPicker | None = None
    expansion: pe_ui.ExpansionBox | None = None

    @property
    def param_outputs(self) -> list:
        fields = [self.instruction, self.image_guidance, self.guidance, self.steps, self.seed]
        return fields + (self.expansion.param_outputs if self.expansion else [])


def values_from_params(params: dict) -> list:
    typed, expansion = pe_ui.values_from_params(params)
    return [
        typed,
        params.get("image_guidance") or 0,
        params.get("guidance") or 0,
        params.get("steps") or 0,
        params.get("seed") if params.get("seed") is not None else -1,
        *expansion,
    ]


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


def editor_value(source: Image.Image, mask: Image.Image | None = None) -> dict:
    """The editor's value for `source` with `mask` (white = change) painted back on as a layer,
    so the next Edit is the same masked edit (`mask_from_layers` reads the same mask back)."""
    source = source.convert("RGBA")
    if mask is None:
        return {"background": source, "layers": [], "composite": source}
    painted = np.asarray(mask.convert("L").resize(source.size, Image.NEAREST)) > 127
    layer = np.zeros((source.height, source.width, 4), dtype=np.uint8)
    layer[painted] = MASK_PAINT
    layer_image = Image.fromarray(layer, mode="RGBA")
    return {"background": source, "layers": [layer_image], "composite": Image.alpha_composite(source, layer_image)}


def check_size(image: Image.Image) -> None:
    w, h = image.size
    if w % 16 or h % 16 or max(w, h) > MAX_SIDE:
        raise gr.Error(
            f"The source image is {w}x{h}; sides must be multiples of 16 and at most {MAX_SIDE} "
            "(results from this app, 128x128, always fit)."
        )


def build(services: Services) -> EditTab:
    defaults = services.settings.model_defaults()
    with gr.Row():
        with gr.Column(scale=1):
            editor = SafeImageEditor(
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
            instruction = Textbox(
                label="Instruction", lines=2, placeholder="make the sky purple", elem_id="edit-instruction"
            )
            expansion = pe_ui.expansion_box("edit")
            with gr.Row():
                image_guidance = guidance_input("Image guidance", defaults.get("image_guidance"))
                guidance = guidance_input("Text guidance", defaults.get("guidance"))
            with gr.Row():
                steps = steps_input(defaults.get("steps"))
                seed = seed_input()
            picker = adapter_picker(services, "edit")
            run, cancel = run_buttons("Edit", "edit")
        status, preview, gallery, tab_jobs = results_column(services, "edit")
    job_id = gr.State(None)

    def edit(
        editor_value,
        instruction,
        image_guidance,
        guidance,
        steps,
        seed,
        adapters=None,
        adapter_strength=1.0,
        prompt_expansion=False,
        expanded_prompt="",
        progress=gr.Progress(),  # noqa: B008 - the Gradio idiom
        request: gr.Request = None,
    ):
        """Edit a source image by instruction; a painted mask makes it a masked (inpaint) edit.

        With `prompt_expansion`, runs `expanded_prompt` (or expands the instruction when it is empty)."""
        background = (editor_value or {}).get("background")
        if background is None:
            raise gr.Error("Add a source image first (upload one, or use 'Send to edit' in History).")
        source = background.convert("RGB")
        check_size(source)
        mask = mask_from_layers((editor_value or {}).get("layers") or [], source.size)
        run_prompt = pe_ui.resolve(
            services, instruction, prompt_expansion, expanded_prompt, "edit" if mask is None else "inpaint"
        )
        source_row = services.history.store_input(source)
        common = {
            "prompt": run_prompt.prompt,
            "typed_prompt": run_prompt.typed_prompt,
            "image_guidance": optional(image_guidance),
            "guidance": optional(guidance),
            "steps": optional(steps),
            "seed": resolve_seed(seed),
            "width": source.width,
            "height": source.height,
            "source_image_id": source_row.id,
            "adapters": adapter_uses(adapters, adapter_strength),
        }
        if mask is None:
            spec = build_spec("edit", **common)
        else:
            spec = build_spec(
                "inpaint", mask_image_id=services.history.store_input(mask, "mask").id, **common
            )
        for job, status, *rest in run_and_watch(services, spec, progress, tab_jobs=tab_jobs, request=request):
            yield job, pe_ui.status_with(run_prompt, status), *rest

    def task_of(text, editor_value):
        """An instruction edit, or a masked edit when something is painted."""
        value = editor_value or {}
        background = value.get("background")
        painted = background is not None and mask_from_layers(value.get("layers") or [], background.size)
        return text or "", "inpaint" if painted else "edit", None, None

    run.click(
        edit,
        [editor, instruction, image_guidance, guidance, steps, seed, *picker.inputs, *expansion.inputs],
        [job_id, status, preview, gallery, tab_jobs.state],
        api_name="edit",
        trigger_mode="multiple",  # a click while a job runs is a second job, not dropped
        **model_event(services),
    )
    cancel.click(cancel_handler(services), job_id, status, api_visibility=PRIVATE, queue=False)
    pe_ui.wire(services, expansion, instruction, task_of, [editor])
    return EditTab(editor, instruction, image_guidance, guidance, steps, seed, picker, expansion)
