"""Storyboard tab: M consistent panels from one story prompt or one line per panel."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from seedling.backend.services import Services
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui.common import (
    PRIVATE,
    AdapterPicker,
    Gallery,
    SafeImage,
    Slider,
    TabJobs,
    Textbox,
    adapter_picker,
    adapter_uses,
    build_spec,
    cancel_handler,
    guidance_input,
    model_event,
    optional,
    resolve_seed,
    run_and_watch,
    run_buttons,
    seed_input,
    steps_input,
    whole,
)


@dataclass
class StoryboardTab:
    story: gr.Textbox
    panels: gr.Slider
    guidance: gr.Slider
    steps: gr.Slider
    seed: gr.Number
    adapter_picker: AdapterPicker | None = None
    expansion: pe_ui.ExpansionBox | None = None

    @property
    def param_outputs(self) -> list:
        fields = [self.story, self.panels, self.guidance, self.steps, self.seed]
        return fields + (self.expansion.param_outputs if self.expansion else [])


def values_from_params(params: dict) -> list:
    typed, expansion = pe_ui.values_from_params(params)
    story = "\n".join(line.strip() for line in typed.split(";"))
    return [
        story,
        params.get("num_outputs") or 4,
        params.get("guidance") or 0,
        params.get("steps") or 0,
        params.get("seed") if params.get("seed") is not None else -1,
        *expansion,
    ]


def story_prompt(text: str, panels: int) -> tuple[str, int]:
    """Several lines are one panel each (joined with "; "); a single line is the whole story."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(lines) > 1:
        return "; ".join(lines), len(lines)
    return (lines[0] if lines else ""), whole(panels)


def build(services: Services) -> StoryboardTab:
    defaults = services.settings.model_defaults()
    with gr.Row():
        with gr.Column(scale=1):
            story = Textbox(
                label="Story (one line per panel, or one line for the whole story)",
                lines=5,
                placeholder="a fox wakes up\na fox runs through the forest\na fox sleeps",
                elem_id="story-prompt",
            )
            expansion = pe_ui.expansion_box("story")
            panels = Slider(2, 6, value=4, step=1, label="Panels (when the story is one line)")
            character = SafeImage(type="pil", label="Character reference (optional)", height=140)
            with gr.Row():
                guidance = guidance_input(default=defaults.get("guidance"))
                steps = steps_input(defaults.get("steps"))
                seed = seed_input()
            picker = adapter_picker(services, "story")
            run, cancel = run_buttons("Make storyboard", "story")
        with gr.Column(scale=1):
            status = gr.Markdown("", elem_id="story-status")
            tab_jobs = TabJobs(services, "story")
            tab_jobs.status_output = status
            preview = gr.Image(label="Preview", interactive=False, height=160)
    strip = Gallery(
        label="Storyboard", columns=6, rows=1, height=220, elem_id="story-strip"
    )
    job_id = gr.State(None)

    def storyboard(
        story,
        panels,
        character,
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
        """A storyboard of 2-6 panels; lines of the story become panels.

        With `prompt_expansion`, runs `expanded_prompt` (or expands the story when it is empty); the
        expanded storyboard prompt sets the number of panels."""
        typed, count = story_prompt(story, panels)
        if not isinstance(count, int):
            raise gr.Error(f"Panels must be a whole number from 2 to 6, not {str(count)[:40]!r}.")
        run_prompt = pe_ui.resolve(services, typed, prompt_expansion, expanded_prompt, "storyboard", count)
        prompt = run_prompt.prompt
        if run_prompt.typed_prompt is not None:
            count = run_prompt.num_outputs or pe_ui.storyboard_panels(prompt) or count
        if not isinstance(count, int) or not 2 <= count <= 6:
            raise gr.Error(f"A storyboard has 2 to 6 panels; the story has {count} lines.")
        character_id = services.history.store_input(character).id if character is not None else None
        spec = build_spec(
            "storyboard",
            prompt=prompt,
            typed_prompt=run_prompt.typed_prompt,
            num_outputs=count,
            character_image_id=character_id,
            guidance=optional(guidance),
            steps=optional(steps),
            seed=resolve_seed(seed),
            adapters=adapter_uses(adapters, adapter_strength),
        )
        for job, status, *rest in run_and_watch(services, spec, progress, tab_jobs=tab_jobs, request=request):
            yield job, pe_ui.status_with(run_prompt, status), *rest

    def task_of(text, panels):
        typed, count = story_prompt(text, panels)
        return typed, "storyboard", count, None

    run.click(
        storyboard,
        [story, panels, character, guidance, steps, seed, *picker.inputs, *expansion.inputs],
        [job_id, status, preview, strip, tab_jobs.state],
        api_name="storyboard",
        trigger_mode="multiple",  # a click while a job runs is a second job, not dropped
        **model_event(services),
    )
    cancel.click(cancel_handler(services), job_id, status, api_visibility=PRIVATE, queue=False)
    pe_ui.wire(services, expansion, story, task_of, [panels])
    return StoryboardTab(story, panels, guidance, steps, seed, picker, expansion)
