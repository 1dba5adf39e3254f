"""What an expander returns, and the interface every expander implements."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol

# How much work an expansion did (Seedream's adaptive budget, in miniature).
PASSTHROUGH = "passthrough"  # already in the vocabulary: unchanged
REWRITE = "rewrite"  # reworded into training captions
DECOMPOSE = "decompose"  # split: a story into panels, several subjects into a composition


@dataclass(frozen=True)
class Match:
    """One piece of the prompt grounded in the vocabulary."""

    phrase: str  # what the prompt says ("a little kitty", "crimson", "upper left corner")
    kind: str  # "icon", "shape", "color", "position", "background", "text", "values", "count"
    value: str  # what the model knows ("cat", "red", "top left")
    score: float  # cosine similarity for MiniLM groundings; 1.0 for exact table lookups
    alternatives: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Suggestion:
    """A task that fits the prompt better than the tab it was typed in."""

    task: str  # "storyboard", "compose", ...
    prompt: str  # the prompt for that task
    num_outputs: int | None = None
    steps: tuple[str, ...] = ()  # what to do, in order, when it needs more than one job


@dataclass
class ExpansionResult:
    typed: str  # the prompt as typed
    prompt: str  # the expanded prompt (for `task`); equals `typed` on passthrough
    task: str  # the task it was expanded for
    budget: str  # PASSTHROUGH | REWRITE | DECOMPOSE
    grounded: bool  # False: nothing close in the vocabulary; the image would likely be noise
    num_outputs: int | None = None  # suggested (storyboard panels)
    matches: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # sentences for the UI
    suggestion: Suggestion | None = None
    # compose: each reference's box in the output (fractions, reference order), for pipe(boxes=...)
    boxes: list[tuple[float, float, float, float]] | None = None
    expander: str = "grounded"
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return self.prompt != self.typed

    def to_dict(self) -> dict:
        return asdict(self)


class PromptExpander(Protocol):
    """Turns what a designer types into what the model understands."""

    name: str

    def expand(
        self, prompt: str, task: str = "t2i", num_outputs: int | None = None, n_refs: int | None = None
    ) -> ExpansionResult:
        """`num_outputs`: panels asked for (storyboards); `n_refs`: reference images (compose)."""
        ...
