"""One generation tab built from its field table: inputs on the left, results on the right, a
Run and a Cancel button, the named endpoint, prompt expansion, and Vary on its results."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from seedling.backend.services import Services
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui.common import PRIVATE, File, build_spec, cancel_handler, model_event, run_and_watch
from seedling.ui.fields import Field, FieldContext, FieldTable, Upload
from seedling.ui.results import Results, results_column, selected_image, vary_spec
from seedling.ui.sizes import model_sizes

# (values by field name) -> (task, num_outputs, n_refs): what prompt expansion expands for
ExpandFor = Callable[[dict], tuple[str, "int | None", "int | None"]]


@dataclass(frozen=True)
class TabDef:
    name: str  # the tab's id, as the task table's ui_tab names it
    prefix: str  # elem ids
    run_label: str
    rows: tuple[Field, ...]
    prompt: str  # the name of the prompt field
    expand_for: ExpandFor
    doc: str  # the endpoint's description
    # (ctx, values, spec fields) -> (spec kind, spec fields): a tab's checks and its choice of kind
    draft: Callable[[FieldContext, dict, dict], tuple[str, dict]] | None = None
    expand_inputs: tuple[str, ...] = ()  # fields whose values the Expand button also reads
    # (expansion result, values of expand_inputs by name) -> {name: value}: the expand_inputs an
    # Expand also fills (Compose: the boxes of the places the prompt names)
    from_expansion: Callable[[Any, dict], dict] | None = None
    after_expansion: Callable | None = None  # (fields, resolved prompt) -> fields
    compare: bool = False  # results show before/after
    gallery: dict = field(default_factory=dict)
    wire: Callable[[Tab], None] | None = None  # the tab's own events between its fields
    # (params, ctx) -> a sentence a restore adds to the status: what it could not restore, and why
    restore_note: Callable[[dict, FieldContext], str | None] | None = None
    # the field after which the Run and Cancel buttons sit (None: after all of them): under the
    # prompt and its expansion (prompt_fields), where every tab's are seen without scrolling
    run_after: str | None = "expanded_prompt"


@dataclass
class Tab:
    spec: TabDef
    table: FieldTable
    results: Results
    run: gr.Button
    png_drop: gr.File
    extras: dict

    def __getitem__(self, name: str):
        return self.table[name]


def _stored(services: Services, value):
    if isinstance(value, Upload):
        return services.history.store_input(value.image, value.origin).id
    if isinstance(value, list):
        return [_stored(services, v) for v in value]
    return value


def job_spec(tab: TabDef, ctx: FieldContext, table: FieldTable, values: dict):
    """The spec a click submits (and the resolved prompt, for the status line)."""
    fields = table.spec_fields(values)
    kind, fields = tab.draft(ctx, values, fields) if tab.draft else (tab.name, fields)
    run_prompt = pe_ui.resolve(
        ctx.services,
        fields.get("prompt") or "",
        values.get("prompt_expansion"),
        values.get("expanded_prompt"),
        *tab.expand_for(values),
    )
    fields = {**fields, "prompt": run_prompt.prompt, "typed_prompt": run_prompt.typed_prompt}
    if tab.after_expansion is not None:
        fields = tab.after_expansion(fields, run_prompt)
    # uploads become image rows only now: a refused spec has stored nothing
    fields = {k: _stored(ctx.services, v) for k, v in fields.items() if v is not None}
    return build_spec(kind, **fields), run_prompt


def build(services: Services, tab: TabDef) -> Tab:
    ctx = FieldContext(services, tab.prefix, services.settings.model_defaults())
    ctx.extras["sizes"] = model_sizes(services.settings.model_path)
    table = FieldTable(tab.rows)
    with gr.Row():
        with gr.Column(scale=1):
            buttons = []

            def run_row():
                with gr.Row():
                    buttons.append(gr.Button(tab.run_label, variant="primary", elem_id=f"{tab.prefix}-run"))
                    buttons.append(gr.Button("Cancel", elem_id=f"{tab.prefix}-cancel"))

            table.build(ctx, after=tab.run_after, then=run_row)
            if not buttons:
                run_row()
            run, cancel = buttons
            png_drop = File(
                label="Drop a PNG here to restore its parameters (in the tab that made it)",
                file_types=[".png"],
                type="filepath",
                elem_id=f"{tab.prefix}-png-drop",
            )
        results = results_column(services, tab.prefix, tab.compare, **tab.gallery)

    def handler(*args, progress=gr.Progress(), request: gr.Request = None, **kwargs):  # noqa: B008
        spec, run_prompt = job_spec(tab, ctx, table, table.values(args, kwargs))
        for job, status, *rest in run_and_watch(
            services, spec, progress, tab_jobs=results.jobs, request=request
        ):
            yield job, pe_ui.status_with(run_prompt, status), *rest

    handler.__signature__ = table.signature(
        [
            inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=gr.Progress()),
            inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=gr.Request),
        ]
    )
    handler.__annotations__ = {"request": gr.Request}
    handler.__name__ = tab.name
    handler.__doc__ = tab.doc
    ran = run.click(
        handler,
        table.inputs,
        results.run_outputs,
        api_name=tab.name,
        trigger_mode="multiple",  # a click while a job runs is a second job, not dropped
        **model_event(services),
    )
    results.after_run(ran)
    cancel.click(
        cancel_handler(services), results.job_id, results.status, api_visibility=PRIVATE, queue=False
    )

    def vary(gallery_value, index, progress=gr.Progress(), request: gr.Request = None):  # noqa: B008
        """The selected result's job again with a new seed: a new job in this tab."""
        spec = vary_spec(services, selected_image(services, gallery_value, index))
        yield from run_and_watch(services, spec, progress, tab_jobs=results.jobs, request=request)

    if "vary" in results.actions:
        varied = results.actions["vary"].click(
            vary,
            [results.gallery, results.selected],
            results.run_outputs,
            api_visibility=PRIVATE,
            trigger_mode="multiple",
            **model_event(services),
        )
        results.after_run(varied)

    prompt_row = next(row for row in tab.rows if row.name == tab.prompt)

    def task_of(text, *values):
        named = {**table.values((), {}), **dict(zip(tab.expand_inputs, values)), tab.prompt: text or ""}
        return prompt_row.spec_values(named)["prompt"] or "", *tab.expand_for(named)

    fill = None
    if tab.from_expansion is not None:

        def fill(result, *values):
            filled = tab.from_expansion(result, dict(zip(tab.expand_inputs, values)))
            return tuple(filled.get(name, gr.skip()) for name in tab.expand_inputs)

    expansion = ctx.extras["expansion"]
    pe_ui.wire(services, expansion, table[tab.prompt], task_of, [table[n] for n in tab.expand_inputs], fill)
    built = Tab(tab, table, results, run, png_drop, ctx.extras)
    if tab.wire is not None:
        tab.wire(built)
    return built
