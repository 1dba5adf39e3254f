"""The task table: every task the model runs, with its inputs, outputs and limits, in one place.

Torch-free on purpose (only the standard library): the job specs, the UI and the app process
read it without loading the model stack. The pipeline, the specs, the UI and the trainers all take
their numbers from here, so a limit is changed once and agrees everywhere (tests/test_task_table.py).

    from seedling.model.task_table import TASKS, task_spec, size_grid, check_size
    spec = task_spec("compose")        # TaskSpec(name="compose", references=Range(1, 4), ...)
    spec.references.contains(2)        # True
    grid = size_grid_of("assets/default")  # 16: autoencoder factor 8 x DiT patch 2
    check_size(128, 96, grid)          # raises ValueError with a sentence when a side is off-grid

Where the pipeline and the job spec used to disagree, the spec's numbers (what users meet) won:
at most 4 outputs per job (6 storyboard panels), at most 100 steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# The lineage roles an input picture can have (seedling.storage.images_common.Role lists the same
# names plus "sibling", which only outputs of one job have).
ROLES = ("source", "mask", "reference", "character", "style", "control", "glyph")
UI_TABS = ("generate", "edit", "compose", "storyboard")


@dataclass(frozen=True)
class Range:
    """A closed range of whole or real numbers, lo <= x <= hi."""

    lo: float
    hi: float

    def contains(self, value) -> bool:
        return self.lo <= value <= self.hi

    def describe(self) -> str:
        return f"exactly {self.lo}" if self.lo == self.hi else f"{self.lo} to {self.hi}"


@dataclass(frozen=True)
class Limits:
    """Numeric limits of one generation. The same for every task today; per task so a task that
    needs other limits (e.g. an upscale with a larger side) says so here."""

    steps: Range = Range(1, 100)  # few-step by default; 100 is well past where images stop changing
    guidance: Range = Range(0.0, 30.0)  # text guidance scale; 1 = no guidance branch
    image_guidance: Range = Range(0.0, 30.0)  # image guidance scale for tasks with references
    side: Range = Range(16, 1024)  # pixels; also a multiple of the model's size grid (size_grid)


@dataclass(frozen=True)
class TaskSpec:
    """One task: what goes in, what comes out, its limits and where the UI shows it.

    references: how many input pictures the task takes; roles[i] is the lineage role of input i
    (the last role repeats for further inputs). mask: the task takes a mask (white = change).
    outputs: how many images one job makes; for "storyboard" they are panels made jointly.
    keeps_source_size: without an explicit size the output takes the first input's size.
    ui_tab: the studio tab whose job kind runs the task; None for a task the model side has
    (pipeline, training, evaluation) and the studio does not offer yet.
    control: the one input is a control picture at the output's own token positions (resized to
    the output's size first), which the output follows line for line or pixel for pixel."""

    name: str
    references: Range
    roles: tuple[str, ...]
    mask: bool
    outputs: Range
    default_outputs: int
    ui_tab: str | None
    keeps_source_size: bool = False
    limits: Limits = Limits()
    control: bool = False

    def role_of(self, index: int) -> str:
        """The lineage role of input picture `index`."""
        if not self.roles:
            raise ValueError(f"the {self.name!r} task takes no input pictures")
        return self.roles[min(index, len(self.roles) - 1)]


_OUTPUTS = Range(1, 4)
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec("t2i", Range(0, 0), (), False, _OUTPUTS, 1, "generate"),
        TaskSpec("edit", Range(1, 1), ("source",), False, _OUTPUTS, 1, "edit", keeps_source_size=True),
        TaskSpec("inpaint", Range(1, 1), ("source",), True, _OUTPUTS, 1, "edit", keeps_source_size=True),
        TaskSpec("compose", Range(1, 4), ("reference",), False, _OUTPUTS, 1, "compose"),
        TaskSpec("storyboard", Range(0, 1), ("character",), False, Range(2, 6), 4, "storyboard"),
        TaskSpec("style", Range(1, 1), ("style",), False, _OUTPUTS, 1, "compose", keeps_source_size=True),
        # geometric control (model/data/controls.py): edges or a sketch -> image, grayscale ->
        # colour, low resolution -> high resolution; not in the studio's tabs yet
        *(
            TaskSpec(name, Range(1, 1), ("control",), False, _OUTPUTS, 1, None, keeps_source_size=keep, control=True)
            for name, keep in (("edges", True), ("sketch", True), ("colourise", True), ("upscale", False))
        ),
        # text: the prompt's quoted text drawn plainly (data/glyphs.py) as a control picture, which
        # the output restyles (font, ink) letter for letter; the pipeline makes the glyph itself
        TaskSpec("text", Range(1, 1), ("glyph",), False, _OUTPUTS, 1, None, control=True),
    )
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
STUDIO_TASKS: tuple[str, ...] = tuple(name for name, t in TASKS.items() if t.ui_tab is not None)
CONTROL_TASKS: tuple[str, ...] = tuple(name for name, t in TASKS.items() if t.control)
UPSCALE_FACTORS = (2, 4)  # the upscale task is trained on these (the control: bicubic from 1/f size)
MASK_ROLE = "mask"  # the lineage role of an inpaint's mask picture


def task_spec(name: str) -> TaskSpec:
    """The table's row for `name`; ValueError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASK_NAMES)}") from None


def max_outputs() -> int:
    """The most images any one job may make (the UI's and the backend's outer bound)."""
    return int(max(t.outputs.hi for t in TASKS.values()))


# -- the size grid ------------------------------------------------------------------------------
def size_grid(autoencoder_config: dict, dit_config: dict) -> int:
    """Image sides must be multiples of this: one DiT token covers `patch` latent cells and one
    latent cell covers the autoencoder's factor (2 ** number of down-sampling stages) pixels.
    The f8 autoencoder lists its stages as `channels`, the deep-compression one as `enc_channels`."""
    stages = autoencoder_config.get("enc_channels", autoencoder_config.get("channels"))
    if stages is None:
        raise KeyError("the autoencoder config names no stages ('channels' or 'enc_channels')")
    return 2 ** len(stages) * int(dit_config["patch"])


def size_grid_of(folder: str | Path) -> int:
    """The size grid of a saved model folder, read from its JSON configs (no torch)."""
    folder = Path(folder)
    ae = json.loads((folder / "autoencoder" / "config.json").read_text())
    dit = json.loads((folder / "dit" / "config.json").read_text())
    return size_grid(ae, dit)


def native_size_of(folder: str | Path) -> int:
    """The size a saved model folder was trained at: pipeline.json's `default_size` (128, the
    pipeline's own default, where the folder has no pipeline.json). Unreadable JSON raises."""
    config = Path(folder) / "pipeline.json"
    return int(json.loads(config.read_text()).get("default_size", 128)) if config.exists() else 128


def check_size(height, width, grid: int, limits: Limits = Limits()) -> None:
    """ValueError with a sentence unless both sides are whole multiples of `grid` within the limits."""
    lo, hi = max(grid, int(limits.side.lo)), int(limits.side.hi)
    for name, val in (("height", height), ("width", width)):
        whole = isinstance(val, int) and not isinstance(val, bool) or type(val).__name__.startswith(("int", "uint"))
        if not whole or not lo <= val <= hi or val % grid:
            raise ValueError(f"{name} must be a multiple of {grid} between {lo} and {hi} pixels, got {val!r}")


def size_ok(height, width, grid: int, limits: Limits = Limits()) -> bool:
    try:
        check_size(height, width, grid, limits)
    except ValueError:
        return False
    return True
