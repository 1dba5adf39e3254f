"""The prompt-expansion box every generation tab shows under its prompt.

A toggle, an Expand button, the expanded prompt (editable: the job runs what it says) and the
expansion's notes (what matched, what was dropped, "not grounded"). Typing in the prompt clears
a stale expansion; Generate with the toggle on and an empty box expands first, and stops with
the reason when the prompt is not grounded (a not-grounded Expand leaves the box empty, so
running it anyway takes a deliberate edit, or the toggle off). History's "reuse parameters" and
a dropped PNG restore the typed prompt, the toggle and the expanded prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr

from seedling.backend.errors import JobError
from seedling.backend.prompt_expansion import NotGrounded, Resolved, notes_markdown
from seedling.backend.services import Services
from seedling.ui.common import PRIVATE, Checkbox, Textbox

# (prompt box text, *extra input values) -> (text to expand, task, num_outputs, n_refs)
TaskOf = Callable[..., tuple[str, str, int | None, int | None]]


@dataclass
class ExpansionBox:
    enabled: gr.Checkbox
    expand: gr.Button
    expanded: gr.Textbox
    notes: gr.Markdown

    @property
    def inputs(self) -> list:
        """Appended to a tab's run inputs: (prompt_expansion, expanded_prompt)."""
        return [self.enabled, self.expanded]

    @property
    def param_outputs(self) -> list:
        return [self.enabled, self.expanded]


def expansion_box(elem_prefix: str) -> ExpansionBox:
    """Build the box in the current layout (under the tab's prompt)."""
    with gr.Row():
        enabled = Checkbox(
            value=False,
            label="Prompt expansion",
            info="rewrite the prompt into words the model knows",
            scale=3,
            elem_id=f"{elem_prefix}-pe",
        )
        expand = gr.Button("Expand", size="sm", scale=1, elem_id=f"{elem_prefix}-pe-expand")
    expanded = Textbox(
        value="",  # a default, so API callers that never heard of expansion can leave it out
        label="Expanded prompt (editable: this is what runs when expansion is on)",
        lines=2,
        elem_id=f"{elem_prefix}-pe-expanded",
    )
    notes = gr.Markdown("", elem_id=f"{elem_prefix}-pe-notes")
    return ExpansionBox(enabled, expand, expanded, notes)


def wire(
    services: Services,
    box: ExpansionBox,
    typed: gr.Textbox,
    task_of: TaskOf,
    extra: list | None = None,
    fill: Callable | None = None,
):
    """Expand button -> expanded prompt + notes (and the toggle on); typing clears a stale expansion.
    `fill(result, *extra values)`: new values for the `extra` components (gr.skip() keeps one)."""
    extra = extra or []

    def on_expand(text, *values):
        typed_text, task, num_outputs, n_refs = task_of(text, *values)
        try:
            result = services.expansion.expand(typed_text, task, num_outputs, n_refs)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        # Not grounded: leave the box empty, so Generate stops with the reason instead of running it.
        shown = (True, result.prompt if result.grounded else "", notes_markdown(result))
        return (*shown, *fill(result, *values)) if fill is not None else shown

    def warming():
        """Said before the first expansion, which waits for the expander to load."""
        note = services.expansion.warm_up_note()
        return f"⏳ {note}" if note else gr.skip()

    box.expand.click(warming, None, box.notes, api_visibility=PRIVATE, queue=False).then(
        on_expand,
        [typed, *extra],
        [box.enabled, box.expanded, box.notes, *(extra if fill is not None else [])],
        api_visibility=PRIVATE,
        queue=False,
    )

    def turned(enabled):
        """Turning expansion on starts loading the expander, so the first Generate waits less."""
        note = services.expansion.warm_up_note()
        if enabled and services.expansion.warm_up_in_background():
            return f"⏳ {note}"
        return gr.skip()

    box.enabled.input(turned, box.enabled, box.notes, api_visibility=PRIVATE, queue=False)
    typed.input(lambda: ("", ""), None, [box.expanded, box.notes], api_visibility=PRIVATE, queue=False)


def resolve(
    services: Services,
    typed: str,
    enabled: bool | None,
    expanded: str | None,
    task: str,
    num_outputs: int | None = None,
    n_refs: int | None = None,
) -> Resolved:
    """The prompt a job runs (see PromptExpansionService.resolve); a person-readable gr.Error when
    the expansion is not grounded, so nothing noisy is queued."""
    note = services.expansion.warm_up_note()
    if enabled and not (expanded or "").strip() and note:
        gr.Info(note)  # the job is submitted only after the expansion: say why nothing happens yet
    try:
        return services.expansion.resolve(typed, bool(enabled), expanded, task, num_outputs, n_refs)
    except NotGrounded as err:
        raise gr.Error(
            f"{err} Nothing was generated: rephrase, press Expand and edit the expanded prompt, or turn "
            "prompt expansion off to run the prompt as typed."
        ) from None
    except (JobError, ValueError) as err:
        raise gr.Error(str(err)) from None


def values_from_params(params: dict) -> tuple[str, list]:
    """(prompt box text, [toggle, expanded box]) from a stored spec or restored PNG parameters."""
    typed = params.get("typed_prompt")
    prompt = params.get("prompt", "") or ""
    if typed is None:
        return prompt, [False, ""]
    return typed, [True, prompt]


def storyboard_panels(prompt: str) -> int | None:
    """Panels of a storyboard prompt in the training form ('a storyboard of a fox: A, then B')."""
    head, sep, panels = prompt.partition(": ")
    if not sep or not head:
        return None
    return len(panels.split(", then "))


def status_with(resolved: Resolved, status: str) -> str:
    """The job's status line, plus what the prompt expanded to when the submit expanded it."""
    if resolved.result is None or resolved.prompt == resolved.typed_prompt:
        return status
    return f"{status} · expanded to “{resolved.prompt}”"


def register_api(services: Services) -> None:
    """`/expand_prompt` for gradio_client: (prompt, task, num_outputs, n_refs) -> the result as a dict."""

    def expand_prompt(
        prompt: str, task: str = "t2i", num_outputs: int | None = None, n_refs: int | None = None
    ) -> dict:
        """Expand a prompt for a task (t2i, edit, inpaint, compose, storyboard, style) without running it."""
        try:
            result = services.expansion.expand(prompt, task, num_outputs, n_refs)
        except ValueError as err:
            raise gr.Error(str(err)) from None
        return result.to_dict()

    gr.api(expand_prompt, api_name="expand_prompt")
