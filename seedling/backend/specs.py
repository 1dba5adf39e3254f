"""Typed job specs: one per action, validated before a job is stored or queued.

A spec is the whole description of a job. It is stored as JSON in the job row (`spec.model_dump()`)
and read back with `parse_spec`, so a job can be re-run exactly. Input pictures are referred to
by image id: uploads are stored in the file store first (see HistoryService.store_input), which
also gives every result its lineage.

A new action is a new spec class with its own `kind`, added to `JobSpec`, plus a runner
registered in `backend/runners.py` (fine-tuning: `FinetuneSpec`, `backend/finetune_runner.py`).
Image jobs may apply fine-tuned adapters: `adapters=[(adapter_id, strength), ...]`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from seedling.backend.errors import InvalidJob
from seedling.configs import build_from
from seedling.model.finetune_config import FinetuneConfig
from seedling.model.finetune_data import MAX_EXAMPLES
from seedling.storage.images_common import Role

MAX_SIDE = 1024
MAX_SEED = 2**31 - 1
MAX_ADAPTERS = 4  # adapters applied to one generation
MAX_ID = 2**63 - 1  # SQLite INTEGER: a bigger id cannot name a row (and would overflow the driver)
MAX_PROMPT = 2000
MIN_BOX_SIDE = 1 / 16  # a box side shorter than this (8 px of 128) is a slip of the hand, not a placement
ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$"  # also safe inside PNG parameters text


# Row ids of images (uploads are stored first, so every input picture has one) and adapters.
RowId = Annotated[int, Field(ge=0, le=MAX_ID)]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def check_text(value: str | None, what: str = "the text") -> str | None:
    """Text a person typed, stripped; refuses what no keyboard makes and SQLite, JSON or PNG text
    cannot hold faithfully (NUL and other control characters, unpaired surrogates)."""
    if value is None:
        return None
    if _SURROGATE.search(value):
        raise ValueError(f"{what} contains characters that are not valid Unicode text")
    if _CONTROL.search(value):
        raise ValueError(f"{what} contains control characters (such as NUL); remove them")
    return value.strip()


def as_row_id(value, what: str = "id") -> int:
    """A row id from a user value (an int, a whole float, or digits as text); InvalidJob otherwise."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdecimal() and value.strip().isascii():
        value = int(value.strip())
    if not isinstance(value, int) or not 0 <= value <= MAX_ID:
        shown = repr(value) if not isinstance(value, str) else repr(value[:40])
        raise InvalidJob(f"{what} must be a whole number from 0 to {MAX_ID}, not {shown}")
    return value


def _text_field(what: str):
    """A str field for text a person types (at most MAX_PROMPT characters), stripped and checked
    by `check_text`; `what` names it in the error."""
    return Annotated[str, Field(max_length=MAX_PROMPT), AfterValidator(lambda value: check_text(value, what))]


Prompt = _text_field("the prompt")
Caption = _text_field("a caption")
Instruction = _text_field("an instruction")


class _Spec(BaseModel):
    """Specs and their parts refuse unknown fields and never change once made."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AdapterUse(_Spec):
    """One fine-tuned adapter applied to a generation. Strength 1 = as trained, 0 = off, < 0 pushes away."""

    adapter_id: int = Field(ge=1, le=MAX_ID)
    strength: float = Field(1.0, ge=-2.0, le=2.0, allow_inf_nan=False)


class ImageJobSpec(_Spec):
    """Fields every image-making job has."""

    prompt: Prompt = ""
    # Prompt expansion: what the designer typed, when it was on; `prompt` is the expanded text
    # (possibly edited by hand) that the model ran. None: expansion was off.
    typed_prompt: str | None = Field(None, max_length=MAX_PROMPT)
    steps: int | None = Field(None, ge=1, le=100, description="None: the model's default (few-step)")
    guidance: float | None = Field(None, ge=0.0, le=30.0, allow_inf_nan=False)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    height: int = Field(128, ge=16, le=MAX_SIDE, multiple_of=16)
    width: int = Field(128, ge=16, le=MAX_SIDE, multiple_of=16)
    num_outputs: int = Field(1, ge=1, le=4)
    adapters: list[AdapterUse] = Field(default_factory=list, max_length=MAX_ADAPTERS)

    PROMPT_REQUIRED: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _legacy_adapter_id(cls, data):
        """Specs stored before adapters were a list carry `adapter_id` (None, or one adapter at 1)."""
        if isinstance(data, dict) and "adapter_id" in data:
            data = dict(data)
            legacy = data.pop("adapter_id")
            if legacy is not None and not data.get("adapters"):
                data["adapters"] = [{"adapter_id": legacy}]
        return data

    @field_validator("adapters", mode="before")
    @classmethod
    def _adapter_pairs(cls, value):
        """Also accept [(adapter_id, strength), ...] and bare ids."""
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            return value
        out = []
        for item in value:
            if isinstance(item, (list, tuple)) and 1 <= len(item) <= 2:
                item = {"adapter_id": item[0], **({"strength": item[1]} if len(item) == 2 else {})}
            elif isinstance(item, int) and not isinstance(item, bool):
                item = {"adapter_id": item}
            out.append(item)
        return out

    @field_validator("adapters")
    @classmethod
    def _distinct_adapters(cls, value: list[AdapterUse]) -> list[AdapterUse]:
        ids = [use.adapter_id for use in value]
        for adapter_id in ids:
            if ids.count(adapter_id) > 1:
                raise ValueError(f"adapter #{adapter_id} is listed twice")
        return value

    @property
    def adapter_id(self) -> int | None:
        """The first adapter: the one the job and image rows record (history's adapter filter)."""
        return self.adapters[0].adapter_id if self.adapters else None

    @field_validator("typed_prompt")
    @classmethod
    def _typed_text(cls, value: str | None) -> str | None:
        check_text(value, "the typed prompt")
        return value

    @model_validator(mode="after")
    def _prompt_given(self) -> ImageJobSpec:
        if self.prompt_required() and not self.prompt:
            raise ValueError("a prompt is required")
        return self

    def prompt_required(self) -> bool:
        return self.PROMPT_REQUIRED

    @property
    def task(self) -> str:
        """The pipeline task this job runs: the one its kind names ("t2i" for "generate")."""
        return "t2i" if self.kind == "generate" else self.kind  # type: ignore[attr-defined]

    def inputs(self) -> list[tuple[int, Role]]:
        """Input image ids in the order the pipeline takes them, each with its lineage role."""
        return []

    @property
    def mask_id(self) -> int | None:
        return None


class GenerateSpec(ImageJobSpec):
    kind: Literal["generate"] = "generate"


# Geometric control (issue 19 §4): a picture drawn from the source's lines or its gray shading,
# or the source upscaled 2x or 4x. The job kind stays "edit" (the Edit tab's modes); the task it
# runs is the control's ("upscale" for both upscale kinds).
ControlKind = Literal["edges", "sketch", "colourise", "upscale_2x", "upscale_4x"]
CONTROL_KINDS: tuple[str, ...] = ControlKind.__args__  # type: ignore[attr-defined]
UPSCALE_KINDS = {"upscale_2x": 2, "upscale_4x": 4}  # control kind -> factor


def control_task(kind: str) -> str:
    """The pipeline task a control kind runs."""
    return "upscale" if kind in UPSCALE_KINDS else kind


class EditSpec(ImageJobSpec):
    """Instruction edit of one source image; with `control`, a new picture the prompt describes,
    drawn on the source's edges or sketch lines, or the source coloured or upscaled (the source is
    the control; an upscale's height and width are the source's times its factor, and its prompt
    may be empty: the pixels say what to draw)."""

    kind: Literal["edit"] = "edit"
    source_image_id: RowId
    image_guidance: float | None = Field(None, ge=0.0, le=30.0, allow_inf_nan=False)
    control: ControlKind | None = None

    def prompt_required(self) -> bool:
        return self.control not in UPSCALE_KINDS  # an upscale's pixels say what to draw

    @property
    def task(self) -> str:
        return control_task(self.control) if self.control else self.kind

    def inputs(self) -> list[tuple[int, Role]]:
        return [(self.source_image_id, "control" if self.control else "source")]


class InpaintSpec(EditSpec):
    """Masked edit: only the painted region (mask 255) changes."""

    kind: Literal["inpaint"] = "inpaint"  # type: ignore[assignment]
    mask_image_id: RowId

    @model_validator(mode="after")
    def _no_control(self) -> InpaintSpec:
        if self.control is not None:
            raise ValueError(
                f"a {self.control} picture is drawn from the whole source, so it takes no mask: "
                "clear the mask, or choose the instruction edit"
            )
        return self

    @property
    def mask_id(self) -> int | None:
        return self.mask_image_id


Box = tuple[float, float, float, float]


def check_box(value, number: int) -> Box | None:
    """One reference's box (x0, y0, x1, y1) as fractions of the output, or None (no box); a
    sentence naming the box (counted from 1) when it is not one."""
    if value is None:
        return None
    shown = repr(value)[:60]
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"box {number} is {shown}: give four numbers [x0, y0, x1, y1], or null for no box")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"box {number} is {shown}: its corners must be numbers")
    x0, y0, x1, y1 = (float(v) for v in value)
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
        raise ValueError(f"box {number} is {shown}: its corners are fractions of the picture, from 0 to 1")
    if not (x0 < x1 and y0 < y1):
        raise ValueError(
            f"box {number} is {shown}: give x0 < x1 and y0 < y1 (left before right, top before bottom)"
        )
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise ValueError(
            f"box {number} is {shown}: it is too small; make each side at least 1/16 of the picture"
        )
    return (x0, y0, x1, y1)


class ComposeSpec(ImageJobSpec):
    kind: Literal["compose"] = "compose"
    reference_image_ids: list[RowId] = Field(min_length=1, max_length=4)
    # Where each reference goes in the output, in reference order: (x0, y0, x1, y1) fractions, or
    # None for a reference placed freely. None: no boxes at all (the prompt alone places them).
    boxes: list[Box | None] | None = None

    @field_validator("boxes", mode="before")
    @classmethod
    def _check_boxes(cls, value):
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            # ValueError, not TypeError: pydantic reports only ValueError as the caller's mistake
            raise ValueError("give the boxes as a list with one [x0, y0, x1, y1] (or null) per reference")  # noqa: TRY004
        return [check_box(box, i + 1) for i, box in enumerate(value)]

    @model_validator(mode="after")
    def _one_box_per_reference(self) -> ComposeSpec:
        if self.boxes is not None and len(self.boxes) != len(self.reference_image_ids):
            n, refs = len(self.boxes), len(self.reference_image_ids)
            raise ValueError(
                f"{n} box{'es' if n != 1 else ''} for {refs} reference{'s' if refs != 1 else ''}: "
                "give one box (or null) per reference image, in the references' order"
            )
        return self

    def inputs(self) -> list[tuple[int, Role]]:
        return [(image_id, "reference") for image_id in self.reference_image_ids]


class StyleSpec(ImageJobSpec):
    kind: Literal["style"] = "style"
    PROMPT_REQUIRED: ClassVar[bool] = False  # the style image alone says what to do
    style_image_id: RowId

    def inputs(self) -> list[tuple[int, Role]]:
        return [(self.style_image_id, "style")]


class StoryboardSpec(ImageJobSpec):
    """M panels of one story; the prompt is a story or panel lines joined with "; "."""

    kind: Literal["storyboard"] = "storyboard"
    num_outputs: int = Field(4, ge=2, le=6)
    character_image_id: RowId | None = None

    def inputs(self) -> list[tuple[int, Role]]:
        return [(self.character_image_id, "character")] if self.character_image_id is not None else []


_FT = FinetuneConfig()


class TrainImage(_Spec):
    image_id: RowId
    caption: Caption = ""


class TrainPair(_Spec):
    before_image_id: RowId
    after_image_id: RowId
    instruction: Instruction = ""


class FinetuneSpec(_Spec):
    """Post-train the model on the user's images (captioned) or edit pairs; the result is an adapter
    named `name`. Defaults are model.finetune_config.FinetuneConfig's."""

    kind: Literal["finetune"] = "finetune"
    name: str = Field(description="the adapter's name (letters, digits, space _ . -)")
    images: list[TrainImage] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    pairs: list[TrainPair] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    method: Literal["lora", "full"] = _FT.method
    rank: int = Field(_FT.rank, ge=1, le=128)
    alpha: float | None = Field(None, gt=0, le=1024, allow_inf_nan=False, description="None: = rank")
    steps: int = Field(_FT.steps, ge=1, le=20000)
    learning_rate: float | None = Field(None, gt=0, le=1, allow_inf_nan=False, description="None: per method")
    batch_size: int = Field(_FT.batch_size, ge=1, le=64)
    sample_every: int = Field(_FT.sample_every, ge=0, le=20000, description="0: samples at the end only")
    sample_prompts: list[Annotated[str, Field(max_length=MAX_PROMPT)]] = Field(
        default_factory=list, max_length=4
    )
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @field_validator("sample_prompts")
    @classmethod
    def _sample_text(cls, value: list[str]) -> list[str]:
        return [check_text(p, "a sample prompt") for p in value]

    @field_validator("name", mode="before")
    @classmethod
    def _strip_name(cls, value):
        return value.strip() if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _name_chars(cls, value: str) -> str:
        if not re.fullmatch(ADAPTER_NAME_PATTERN, value):
            raise ValueError("give the adapter a name of 1-64 letters, digits, spaces, '_', '.' or '-'")
        return value

    @model_validator(mode="after")
    def _one_training_set(self) -> FinetuneSpec:
        if not self.images and not self.pairs:
            raise ValueError("no training images: add images with captions, or edit pairs")
        if self.images and self.pairs:
            raise ValueError("captioned images and edit pairs are mixed: train on one kind at a time")
        missing = [str(i + 1) for i, im in enumerate(self.images) if not im.caption]
        missing += [str(i + 1) for i, pr in enumerate(self.pairs) if not pr.instruction]
        if missing:
            what = "caption" if self.images else "instruction"
            raise ValueError(f"training example(s) {', '.join(missing[:10])} have no {what}")
        return self

    # what JobService.submit reads from every spec
    adapters: ClassVar[tuple] = ()
    adapter_id: ClassVar[None] = None
    mask_id: ClassVar[None] = None

    def inputs(self) -> list[tuple[int, Role]]:
        """Every training picture (checked to exist at submit; not lineage: an adapter is no image)."""
        ids = [im.image_id for im in self.images]
        ids += [i for pr in self.pairs for i in (pr.before_image_id, pr.after_image_id)]
        return [(image_id, "reference") for image_id in ids]

    def finetune_config(self) -> FinetuneConfig:
        """The fields named like FinetuneConfig's are its values; it keeps its defaults for the rest."""
        return build_from(FinetuneConfig, self)


JobSpec = Annotated[
    GenerateSpec | EditSpec | InpaintSpec | ComposeSpec | StyleSpec | StoryboardSpec | FinetuneSpec,
    Field(discriminator="kind"),
]
IMAGE_JOB_KINDS = ("generate", "edit", "inpaint", "compose", "style", "storyboard")
_ADAPTER: TypeAdapter[JobSpec] = TypeAdapter(JobSpec)
_SPEC_FIELDS = {
    cls.model_fields["kind"].default: set(cls.model_fields)
    for cls in (GenerateSpec, EditSpec, InpaintSpec, ComposeSpec, StyleSpec, StoryboardSpec, FinetuneSpec)
}


def _message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            kinds = ", ".join((*IMAGE_JOB_KINDS, "finetune"))
            tag = e.get("ctx", {}).get("tag")
            given = f"unknown job kind {str(tag)[:40]!r}" if tag is not None else "the job has no kind"
            parts.append(f"{given}; choose one of: {kinds}")
            continue
        where = ".".join(str(p) for p in e["loc"][1:] if p != "kind") if len(e["loc"]) > 1 else ""
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def parse_spec(data: dict) -> JobSpec:
    """A spec from its JSON form; raises InvalidJob with a readable message."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as err:
        raise InvalidJob(_message(err)) from None


def make_spec(kind: str, **fields) -> JobSpec:
    return parse_spec({"kind": kind, **fields})


def spec_from_params(params: dict, **changes) -> JobSpec:
    """The spec an image's stored params describe (they add keys such as `model`), with `changes`."""
    merged = {"kind": "generate", **params, **changes}
    fields = _SPEC_FIELDS.get(merged["kind"], ())
    return parse_spec({k: v for k, v in merged.items() if k in fields})


def spec_json(spec: ImageJobSpec | FinetuneSpec) -> dict:
    return spec.model_dump(mode="json")
