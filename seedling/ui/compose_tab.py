"""Compose tab: 1-4 reference images and a prompt (or one image as a style reference)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from seedling.backend.services import Services
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui.common import (
    PRIVATE,
    AdapterPicker,
    Radio,
    SafeImage,
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

SLOTS = 4


@dataclass
class ComposeTab:
    refs: list[gr.Image]
    prompt: gr.Textbox
    guidance: gr.Slider
    steps: gr.Slider
    seed: gr.Number
    adapter_picker: AdapterPicker | None = None
    expansion: pe_ui.ExpansionBox | None = None

    @property
    def param_outputs(self) -> list:
        fields = [self.prompt, self.guidance, self.steps, self.seed]
        return fields + (self.expansion.param_outputs if self.expansion else [])


def values_from_params(params: dict) -> list:
    typed, expansion = pe_ui.values_from_params(params)
    return [
        typed,
        params.get("guidance") or 0,
        params.get("steps") or 0,
        params.get("seed") if params.get("seed") is not None else -1,
        *expansion,
    ]


def build(services: Services) -> ComposeTab:
    defaults = services.settings.model_defaults()
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                refs = [
                    SafeImage(type="pil", label=f"Reference {i + 1}", height=140, elem_id=f"compose-ref-{i}")
                    for i in range(SLOTS)
                ]
            mode = Radio(
                ["compose", "style"],
                value="compose",
                label="Mode",
                info="style: restyle the prompt after one reference image",
            )
            prompt = Textbox(
                label="Prompt",
                lines=2,
                placeholder="the cat from 1 sitting on the sofa from 2",
                elem_id="compose-prompt",
            )
            expansion = pe_ui.expansion_box("compose")
            with gr.Row():
                guidance = guidance_input(default=defaults.get("guidance"))
                steps = steps_input(defaults.get("steps"))
                seed = seed_input()
            picker = adapter_picker(services, "compose")
            run, cancel = run_buttons("Compose", "compose")
        status, preview, gallery, tab_jobs = results_column(services, "compose")
    job_id = gr.State(None)

    def compose(
        mode,
        prompt,
        guidance,
        steps,
        seed,
        ref1,
        ref2,
        ref3,
        ref4,
        adapters=None,
        adapter_strength=1.0,
        prompt_expansion=False,
        expanded_prompt="",
        progress=gr.Progress(),  # noqa: B008 - the Gradio idiom
        request: gr.Request = None,
    ):
        """Compose 1-4 reference images as the prompt describes (mode "style": exactly one image).

        With `prompt_expansion`, runs `expanded_prompt` (or expands `prompt` when it is empty)."""
        images = [im for im in (ref1, ref2, ref3, ref4) if im is not None]
        if not images:
            raise gr.Error("Add at least one reference image.")
        task = "style" if mode == "style" else "compose"
        run_prompt = pe_ui.resolve(
            services, prompt, prompt_expansion, expanded_prompt, task, n_refs=len(images)
        )
        ids = [services.history.store_input(im).id for im in images]
        common = {
            "prompt": run_prompt.prompt,
            "typed_prompt": run_prompt.typed_prompt,
            "guidance": optional(guidance),
            "steps": optional(steps),
            "seed": resolve_seed(seed),
            "adapters": adapter_uses(adapters, adapter_strength),
        }
        if mode == "style":
            if len(ids) != 1:
                raise gr.Error("Style mode takes exactly one reference image.")
            spec = build_spec("style", style_image_id=ids[0], **common)
        else:
            spec = build_spec("compose", reference_image_ids=ids, **common)
        for job, status, *rest in run_and_watch(services, spec, progress, tab_jobs=tab_jobs, request=request):
            yield job, pe_ui.status_with(run_prompt, status), *rest

    def task_of(text, mode, *ref_images):
        n = sum(im is not None for im in ref_images)
        return text or "", "style" if mode == "style" else "compose", None, n or None

    run.click(
        compose,
        [mode, prompt, guidance, steps, seed, *refs, *picker.inputs, *expansion.inputs],
        [job_id, status, preview, gallery, tab_jobs.state],
        api_name="compose",
        trigger_mode="multiple",  # a click while a job runs is a second job, not dropped
        **model_event(services),
    )
    cancel.click(cancel_handler(services), job_id, status, api_visibility=PRIVATE, queue=False)
    pe_ui.wire(services, expansion, prompt, task_of, [mode, *refs])
    return ComposeTab(refs, prompt, guidance, steps, seed, picker, expansion)
