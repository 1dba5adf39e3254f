"""Typed job specs: one per action, validated before a job is stored or queued.

A spec is the whole description of a job. It is stored as JSON in the job row (`spec.model_dump()`)
and read back with `parse_spec`, so a job can be re-run exactly. Input pictures are referred to
by image id: uploads are stored in the file store first (see HistoryService.store_input), which
also gives every result its lineage.

A new action (fine-tuning, in a later issue) is a new spec class with its own `kind`, added to
`JobSpec`, plus a runner registered in `backend/runners.py`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from backend.errors import InvalidJob
from storage.images_common import Role

MAX_SIDE = 1024
MAX_SEED = 2**31 - 1


class ImageJobSpec(BaseModel):
    """Fields every image-making job has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field("", max_length=2000)
    steps: int | None = Field(None, ge=1, le=100, description="None: the model's default (few-step)")
    guidance: float | None = Field(None, ge=0.0, le=30.0, allow_inf_nan=False)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    height: int = Field(128, ge=16, le=MAX_SIDE, multiple_of=16)
    width: int = Field(128, ge=16, le=MAX_SIDE, multiple_of=16)
    num_outputs: int = Field(1, ge=1, le=4)
    adapter_id: int | None = None

    PROMPT_REQUIRED: ClassVar[bool] = True

    @field_validator("prompt")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _prompt_given(self) -> ImageJobSpec:
        if self.PROMPT_REQUIRED and not self.prompt:
            raise ValueError("a prompt is required")
        return self

    @property
    def task(self) -> str:
        """The pipeline task this job runs."""
        raise NotImplementedError

    def inputs(self) -> list[tuple[int, Role]]:
        """Input image ids in the order the pipeline takes them, each with its lineage role."""
        return []

    @property
    def mask_id(self) -> int | None:
        return None


class GenerateSpec(ImageJobSpec):
    kind: Literal["generate"] = "generate"

    @property
    def task(self) -> str:
        return "t2i"


class EditSpec(ImageJobSpec):
    """Instruction edit of one source image."""

    kind: Literal["edit"] = "edit"
    source_image_id: int
    image_guidance: float | None = Field(None, ge=0.0, le=30.0, allow_inf_nan=False)

    @property
    def task(self) -> str:
        return "edit"

    def inputs(self) -> list[tuple[int, Role]]:
        return [(self.source_image_id, "source")]


class InpaintSpec(EditSpec):
    """Masked edit: only the painted region (mask 255) changes."""

    kind: Literal["inpaint"] = "inpaint"  # type: ignore[assignment]
    mask_image_id: int

    @property
    def task(self) -> str:
        return "inpaint"

    @property
    def mask_id(self) -> int | None:
        return self.mask_image_id


class ComposeSpec(ImageJobSpec):
    kind: Literal["compose"] = "compose"
    reference_image_ids: list[int] = Field(min_length=1, max_length=4)

    @property
    def task(self) -> str:
        return "compose"

    def inputs(self) -> list[tuple[int, Role]]:
        return [(image_id, "reference") for image_id in self.reference_image_ids]


class StyleSpec(ImageJobSpec):
    kind: Literal["style"] = "style"
    PROMPT_REQUIRED: ClassVar[bool] = False  # the style image alone says what to do
    style_image_id: int

    @property
    def task(self) -> str:
        return "style"

    def inputs(self) -> list[tuple[int, Role]]:
        return [(self.style_image_id, "style")]


class StoryboardSpec(ImageJobSpec):
    """M panels of one story; the prompt is a story or panel lines joined with "; "."""

    kind: Literal["storyboard"] = "storyboard"
    num_outputs: int = Field(4, ge=2, le=6)
    character_image_id: int | None = None

    @property
    def task(self) -> str:
        return "storyboard"

    def inputs(self) -> list[tuple[int, Role]]:
        return [(self.character_image_id, "character")] if self.character_image_id is not None else []


JobSpec = Annotated[
    GenerateSpec | EditSpec | InpaintSpec | ComposeSpec | StyleSpec | StoryboardSpec,
    Field(discriminator="kind"),
]
IMAGE_JOB_KINDS = ("generate", "edit", "inpaint", "compose", "style", "storyboard")
_ADAPTER: TypeAdapter[JobSpec] = TypeAdapter(JobSpec)


def _message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
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


def spec_json(spec: ImageJobSpec) -> dict:
    return spec.model_dump(mode="json")
