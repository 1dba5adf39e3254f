"""Storyboard tab: M consistent panels from one story prompt or one line per panel."""

from __future__ import annotations

import gradio as gr

from seedling.model.task_table import TASKS
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui.common import SafeImage, Slider, whole
from seedling.ui.fields import (
    Field,
    Upload,
    image_from_id,
    prompt_fields,
    sampling_fields,
)
from seedling.ui.tab import TabDef

PANELS = TASKS["storyboard"].outputs


def story_prompt(text: str, panels: int) -> tuple[str, int]:
    """Several lines are one panel each (joined with "; "); a single line is the whole story."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if len(lines) > 1:
        return "; ".join(lines), len(lines)
    return (lines[0] if lines else ""), whole(panels)


def _panel_count(panels, story):
    count = story_prompt(story, panels)[1]
    if not isinstance(count, int):
        raise gr.Error(
            f"Panels must be a whole number from {PANELS.lo} to {PANELS.hi}, not {str(count)[:40]!r}."
        )
    return count


def _after_expansion(fields, run_prompt):
    count = fields["num_outputs"]
    if run_prompt.typed_prompt is not None:
        count = run_prompt.num_outputs or pe_ui.storyboard_panels(run_prompt.prompt) or count
    if not isinstance(count, int) or not PANELS.contains(count):
        raise gr.Error(f"A storyboard has {PANELS.lo} to {PANELS.hi} panels; the story has {count} lines.")
    return {**fields, "num_outputs": count}


ROWS = (
    *prompt_fields(
        "story",
        "story-prompt",
        "Story (one line per panel, or one line for the whole story)",
        "a fox wakes up\na fox runs through the forest\na fox sleeps",
        5,
        to_box=lambda typed: "\n".join(line.strip() for line in typed.split(";")),
        to_spec=lambda story: story_prompt(story, 0)[0],
    ),
    Field(
        "panels",
        lambda ctx: Slider(
            PANELS.lo,
            PANELS.hi,
            value=TASKS["storyboard"].default_outputs,
            step=1,
            label="Panels (when the story is one line)",
        ),
        spec="num_outputs",
        key="num_outputs",
        default=TASKS["storyboard"].default_outputs,
        to_spec=_panel_count,
        reads=("story",),
    ),
    Field(
        "character",
        lambda ctx: SafeImage(
            type="pil", label="Character reference (optional)", height=140, elem_id="story-character"
        ),
        spec="character_image_id",
        to_spec=lambda image: Upload(image) if image is not None else None,
        from_params=lambda p, ctx: image_from_id(p, ctx, "character_image_id"),
    ),
    *sampling_fields("storyboard"),
)

TAB = TabDef(
    name="storyboard",
    prefix="story",
    run_label="Make storyboard",
    rows=ROWS,
    prompt="story",
    expand_for=lambda values: ("storyboard", story_prompt(values["story"], values["panels"])[1], None),
    after_expansion=_after_expansion,
    expand_inputs=("panels",),
    gallery={"columns": 3, "height": 320},
    doc="""A storyboard of 2-6 panels; lines of the story become panels.

    With `prompt_expansion`, runs `expanded_prompt` (or expands the story when it is empty); the
    expanded storyboard prompt sets the number of panels.""",
)
