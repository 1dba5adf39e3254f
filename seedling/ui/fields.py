"""A generation tab as one field table.

Each row of a tab's table is one input: the component it builds, the job-spec field its value
fills, the key it is restored from (a stored spec, History's "reuse parameters", a dropped PNG)
and its value when that key is missing. From the table come the tab's inputs (and the named API
endpoint's parameters, in table order), the spec a click submits, and the values a restore
writes back, so adding an input is one row and reuse can never drift from submit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from PIL import Image

from seedling.backend.services import Services
from seedling.backend.specs import MAX_SEED
from seedling.model.task_table import TASKS
from seedling.ui import prompt_expansion as pe_ui
from seedling.ui.common import (
    Dropdown,
    Number,
    Slider,
    Textbox,
    adapter_choices,
    adapter_uses,
    optional,
    resolve_seed,
    whole,
)

NOT_RESTORED = object()  # a field whose value a restore leaves as it is


@dataclass
class FieldContext:
    """What a row's factory and restore may use: the services, the tab's element-id prefix, the
    model's defaults, and components built beside a field (the expansion box)."""

    services: Services
    prefix: str
    defaults: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Upload:
    """An input picture, stored as an image row only once the spec is otherwise complete (a prompt
    that is not grounded queues nothing and stores nothing)."""

    image: Image.Image
    origin: str = "upload"


@dataclass(frozen=True)
class Field:
    name: str  # the handler's argument: the API parameter's name
    make: Callable[[FieldContext], Any]  # builds the component in the current layout
    spec: str | tuple[str, ...] | None = None  # the job-spec field(s) its value fills
    key: str | None = None  # where stored params / restored PNG parameters hold its value
    default: Any = None  # its value when the params lack `key` (also the API parameter's default)
    to_spec: Callable[..., Any] | None = None  # (value, *values of `reads`) -> spec value(s)
    reads: tuple[str, ...] = ()
    from_params: Callable[[dict, FieldContext], Any] | None = None  # replaces the key lookup
    row: str | None = None  # rows sharing a name sit side by side
    required: bool = False  # an API caller must pass it (no default)

    def spec_values(self, values: dict) -> dict:
        if self.spec is None:
            return {}
        value = values[self.name]
        if self.to_spec is not None:
            value = self.to_spec(value, *(values[name] for name in self.reads))
        if isinstance(self.spec, tuple):
            return dict(zip(self.spec, value, strict=True))
        return {self.spec: value}

    def restore(self, params: dict, ctx: FieldContext) -> Any:
        if self.from_params is not None:
            return self.from_params(params, ctx)
        if self.key is None:
            return NOT_RESTORED
        value = params.get(self.key)
        return self.default if value is None else value


class FieldTable:
    """A tab's rows and, once `build` ran, their components."""

    def __init__(self, rows: tuple[Field, ...]):
        names = [row.name for row in rows]
        assert len(set(names)) == len(names), f"duplicate field names: {names}"
        self.rows = rows
        self.components: dict[str, Any] = {}
        self.ctx: FieldContext | None = None

    def build(self, ctx: FieldContext, after: str | None = None, then: Callable[[], None] | None = None) -> None:
        """The components, in table order; consecutive rows with the same `row` share a gr.Row.
        `then()` builds something of the tab's own right after the field named `after`."""
        self.ctx = ctx
        if after is not None and after not in {row.name for row in self.rows}:
            raise ValueError(f"no field named {after!r} to build after")
        index = 0
        while index < len(self.rows):
            group = [self.rows[index]]
            while (
                group[0].row is not None
                and index + len(group) < len(self.rows)
                and self.rows[index + len(group)].row == group[0].row
            ):
                group.append(self.rows[index + len(group)])
            if len(group) > 1:
                with gr.Row():
                    for row in group:
                        self.components[row.name] = row.make(ctx)
            else:
                self.components[group[0].name] = group[0].make(ctx)
            index += len(group)
            if then is not None and after in {row.name for row in group}:
                then()

    def __getitem__(self, name: str):
        return self.components[name]

    @property
    def inputs(self) -> list:
        return [self.components[row.name] for row in self.rows]

    def values(self, args: tuple, kwargs: dict) -> dict:
        """Handler arguments (positional in table order, or by name) as {field name: value}."""
        values = {row.name: row.default for row in self.rows}
        values.update(zip((row.name for row in self.rows), args))
        values.update({k: v for k, v in kwargs.items() if k in values})
        return values

    def spec_fields(self, values: dict) -> dict:
        fields: dict = {}
        for row in self.rows:
            fields.update(row.spec_values(values))
        return fields

    def restored(self, params: dict) -> dict:
        """{component: value} for every field `params` restores (a Gradio update by component)."""
        return {
            self.components[name]: v for name, v in values_from_params(self.rows, params, self.ctx).items()
        }

    def signature(self, tail: list[inspect.Parameter]) -> inspect.Signature:
        """The handler's signature: the API's parameter names, in table order, then `tail`."""
        params = [
            inspect.Parameter(
                row.name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                **({} if row.required else {"default": row.default}),
            )
            for row in self.rows
        ]
        return inspect.Signature(params + tail)


def values_from_params(rows: tuple[Field, ...], params: dict, ctx: FieldContext) -> dict:
    """{field name: value} for every row that `params` (a stored spec, PNG parameters) restores."""
    out = {}
    for row in rows:
        value = row.restore(params, ctx)
        if value is not NOT_RESTORED:
            out[row.name] = value
    return out


# -- rows every generation tab shares -----------------------------------------------------------


def _default_label(name: str, value) -> str:
    """The label of a 0-means-default slider, e.g. `Steps (0 = model default: 2)`; without the
    value when the model's own is unknown."""
    return f"{name} (0 = model default: {value:g})" if value is not None else f"{name} (0 = model default)"


def limits_of(task: str):
    return TASKS[task].limits


def steps_field(task: str, row: str | None = None) -> Field:
    steps = limits_of(task).steps

    def make(ctx):
        return Slider(0, steps.hi, value=0, step=1, label=_default_label("Steps", ctx.defaults.get("steps")))

    return Field("steps", make, spec="steps", key="steps", default=0, to_spec=optional, row=row)


def guidance_field(task: str, name: str = "guidance", row: str | None = None) -> Field:
    """Text guidance, or with name="image_guidance" the image guidance of edits."""
    limits = getattr(limits_of(task), name)
    label = (
        "Image guidance"
        if name == "image_guidance"
        else ("Text guidance" if task in ("edit", "inpaint") else "Guidance")
    )

    def make(ctx):
        text = _default_label(label, ctx.defaults.get(name))
        if task == "t2i" and name == "guidance" and ctx.defaults.get("text_guidance") is not None:
            text = f"{text[:-1]}; quoted text: {ctx.defaults['text_guidance']:g})"  # the text task's own default
        return Slider(limits.lo, limits.hi, value=0.0, step=0.5, label=text)

    return Field(name, make, spec=name, key=name, default=0, to_spec=optional, row=row)


def seed_field(row: str | None = None) -> Field:
    def make(ctx):
        # precision=None: a fractional seed reaches resolve_seed, which refuses it with a sentence
        # (precision=0 had Gradio round 1.5 to 2 silently).
        return Number(value=-1, precision=None, label="Seed (-1 = random)", minimum=-1, maximum=MAX_SEED)

    return Field("seed", make, spec="seed", key="seed", default=-1, to_spec=resolve_seed, row=row)


def prompt_fields(name: str, elem: str, label: str, placeholder: str, lines: int, to_box=None, to_spec=None):
    """The prompt box and the prompt-expansion box under it (toggle, editable expanded prompt).
    The spec's prompt is resolved from all three (see TabDef.submit); a restore puts the typed
    prompt back in the box, the toggle on and the prompt that ran in the expanded box."""

    def make_prompt(ctx):
        return Textbox(label=label, lines=lines, placeholder=placeholder, elem_id=elem)

    def make_toggle(ctx):
        ctx.extras["expansion"] = pe_ui.expansion_box(ctx.prefix)
        return ctx.extras["expansion"].enabled

    def typed(params, ctx):
        text = pe_ui.values_from_params(params)[0]
        return to_box(text) if to_box else text

    return (
        Field(name, make_prompt, spec="prompt", to_spec=to_spec, from_params=typed, default=""),
        Field(
            "prompt_expansion",
            make_toggle,
            default=False,
            from_params=lambda p, c: pe_ui.values_from_params(p)[1][0],
        ),
        Field(
            "expanded_prompt",
            lambda ctx: ctx.extras["expansion"].expanded,
            default="",
            from_params=lambda p, c: pe_ui.values_from_params(p)[1][1],
        ),
    )


def _adapter_values(params: dict, ctx) -> list[str]:
    return [
        str(use["adapter_id"] if isinstance(use, dict) else use[0]) for use in params.get("adapters") or []
    ]


def _adapter_strength(params: dict, ctx) -> float:
    uses = params.get("adapters") or []
    if not uses:
        return NOT_RESTORED
    first = uses[0]
    return float(first["strength"] if isinstance(first, dict) else first[1])


def adapter_fields() -> tuple[Field, Field]:
    """Fine-tuned adapters (any number, one strength for all) -> spec `adapters`."""

    def make_list(ctx):
        return Dropdown(
            choices=adapter_choices(ctx.services),
            value=[],
            multiselect=True,
            label="Adapters (from the Fine-tune tab)",
            scale=3,
            allow_custom_value=True,  # API callers may pass ids; unknown ones get the backend's message
            elem_id=f"{ctx.prefix}-adapters",
        )

    def make_strength(ctx):
        return Slider(
            -1.0,
            2.0,
            value=1.0,
            step=0.05,
            label="Adapter strength",
            scale=2,
            elem_id=f"{ctx.prefix}-strength",
        )

    return (
        Field(
            "adapters",
            make_list,
            spec="adapters",
            to_spec=adapter_uses,
            reads=("adapter_strength",),
            from_params=_adapter_values,
            row="adapters",
        ),
        Field("adapter_strength", make_strength, default=1.0, from_params=_adapter_strength, row="adapters"),
    )


def image_from_id(params: dict, ctx: FieldContext, key: str, index: int | None = None):
    """The stored input picture a spec names (params[key], or its index-th id), as a path for an
    image component; None when the spec names none; NOT_RESTORED when it no longer exists."""
    value = params.get(key)
    if index is not None:
        value = value[index] if isinstance(value, list) and index < len(value) else None
    if value is None:
        return None
    try:
        return str(ctx.services.history.path(ctx.services.history.get(value)))
    except Exception:  # noqa: BLE001 - deleted since: keep what the tab shows
        return NOT_RESTORED


def whole_field(name: str, make, key: str | None = None, default=None, row=None) -> Field:
    return Field(name, make, spec=key or name, key=key or name, default=default, to_spec=whole, row=row)


def sampling_fields(task: str) -> tuple[Field, ...]:
    """Guidance, steps and seed side by side, then the adapters: the tail of the compose and
    storyboard tables."""
    return (
        guidance_field(task, row="sampling"),
        steps_field(task, row="sampling"),
        seed_field(row="sampling"),
        *adapter_fields(),
    )
