"""Generate tab: text to image."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from seedling.backend.services import Services
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui.common import (
    PRIVATE,
    AdapterPicker,
    File,
    Radio,
    Slider,
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
    whole,
)

ASPECTS = {
    "1:1": (128, 128),
    "4:3": (160, 128),
    "3:4": (128, 160),
    "3:2": (192, 128),
    "2:3": (128, 192),
    "16:9": (224, 128),
    "9:16": (128, 224),
}


@dataclass
class GenerateTab:
    prompt: gr.Textbox
    width: gr.Slider
    height: gr.Slider
    steps: gr.Slider
    guidance: gr.Slider
    seed: gr.Number
    num_outputs: gr.Slider
    gallery: gr.Gallery
    adapter_picker: AdapterPicker | None = None
    expansion: pe_ui.ExpansionBox | None = None

    @property
    def param_outputs(self) -> list:
        fields = [
            self.prompt,
            self.width,
            self.height,
            self.steps,
            self.guidance,
            self.seed,
            self.num_outputs,
        ]
        return fields + (self.expansion.param_outputs if self.expansion else [])


def values_from_params(params: dict) -> list:
    """Field values for `param_outputs` from a stored spec (or restored PNG parameters)."""
    typed, expansion = pe_ui.values_from_params(params)
    return [
        typed,
        params.get("width") or 128,
        params.get("height") or 128,
        params.get("steps") or 0,
        params.get("guidance") or 0,
        params.get("seed") if params.get("seed") is not None else -1,
        min(params.get("num_outputs") or 1, 4),
        *expansion,
    ]


# Where the parameters of a PNG another tab made belong (its text is an edit instruction, a
# composition or a story, not a text-to-image prompt).
MADE_IN = {
    "edit": "Edit",
    "inpaint": "Edit",
    "compose": "Compose",
    "style": "Compose",
    "storyboard": "Storyboard",
}


def restored_values(services: Services, path: str, n_fields: int) -> list:
    """Values for the tab's parameter fields and its status line from a dropped PNG. A PNG made by
    another tab changes nothing here and says where its parameters go."""
    try:
        restored = services.history.parameters_from_png(path)
    except (ValueError, OSError) as err:
        raise gr.Error(f"Could not read parameters: {err}") from None
    if restored.kind in MADE_IN:
        tab = MADE_IN[restored.kind]
        message = (
            f"This PNG is a {restored.kind} image: its parameters belong to the {tab} tab, so nothing "
            f"here was changed. To redo it, find it in History and press Reuse parameters (it opens "
            f"the {tab} tab with its inputs)."
        )
        return [gr.skip()] * n_fields + [message]
    return values_from_params(vars(restored)) + [f"Restored parameters of a {restored.kind} image"]


def build(services: Services) -> GenerateTab:
    defaults = services.settings.model_defaults()
    with gr.Row():
        with gr.Column(scale=1):
            prompt = Textbox(
                label="Prompt", lines=3, placeholder="a red fox in the snow", elem_id="gen-prompt"
            )
            expansion = pe_ui.expansion_box("gen")
            aspect = Radio(list(ASPECTS), value="1:1", label="Aspect")
            with gr.Row():
                width = Slider(64, 512, value=128, step=16, label="Width")
                height = Slider(64, 512, value=128, step=16, label="Height")
            with gr.Row():
                steps = steps_input(defaults.get("steps"))
                guidance = guidance_input(default=defaults.get("guidance"))
            with gr.Row():
                seed = seed_input()
                num_outputs = Slider(1, 4, value=1, step=1, label="Images")
            picker = adapter_picker(services, "gen")
            run, cancel = run_buttons("Generate", "gen")
            png_drop = File(
                label="Drop a PNG here to restore its parameters",
                file_types=[".png"],
                type="filepath",
                elem_id="gen-png-drop",
            )
        status, preview, gallery, tab_jobs = results_column(services, "gen")
    job_id = gr.State(None)
    tab = GenerateTab(prompt, width, height, steps, guidance, seed, num_outputs, gallery, picker, expansion)

    aspect.change(lambda a: ASPECTS[a], aspect, [width, height], api_visibility=PRIVATE, queue=False)

    def generate(
        prompt,
        width,
        height,
        steps,
        guidance,
        seed,
        num_outputs,
        adapters=None,
        adapter_strength=1.0,
        prompt_expansion=False,
        expanded_prompt="",
        progress=gr.Progress(),  # noqa: B008 - the Gradio idiom
        request: gr.Request = None,
    ):
        """Text to image. Returns the status line, the last preview and the result gallery.

        With `prompt_expansion`, runs `expanded_prompt` (or expands `prompt` when it is empty)."""
        run_prompt = pe_ui.resolve(services, prompt, prompt_expansion, expanded_prompt, "t2i")
        spec = build_spec(
            "generate",
            prompt=run_prompt.prompt,
            typed_prompt=run_prompt.typed_prompt,
            width=whole(width),
            height=whole(height),
            steps=optional(steps),
            guidance=optional(guidance),
            seed=resolve_seed(seed),
            num_outputs=whole(num_outputs),
            adapters=adapter_uses(adapters, adapter_strength),
        )
        for job, status, *rest in run_and_watch(services, spec, progress, tab_jobs=tab_jobs, request=request):
            yield job, pe_ui.status_with(run_prompt, status), *rest

    run.click(
        generate,
        [prompt, width, height, steps, guidance, seed, num_outputs, *picker.inputs, *expansion.inputs],
        [job_id, status, preview, gallery, tab_jobs.state],
        api_name="generate",
        trigger_mode="multiple",  # a click while a job runs is a second job, not dropped
        **model_event(services),
    )
    cancel.click(cancel_handler(services), job_id, status, api_visibility=PRIVATE, queue=False)
    pe_ui.wire(services, expansion, prompt, lambda text: (text or "", "t2i", None, None))
    pe_ui.register_api(services)

    def restore(path):
        if not path:
            return [gr.skip()] * len(tab.param_outputs) + [gr.skip()]
        return restored_values(services, path, len(tab.param_outputs))

    png_drop.upload(restore, png_drop, tab.param_outputs + [status], api_visibility=PRIVATE)
    return tab
