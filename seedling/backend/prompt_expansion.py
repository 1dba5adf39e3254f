"""Prompt expansion for the UI: the Expand button, and jobs submitted with expansion on.

Expansion runs where the prompt is typed (the app process), before a job exists, so the person
sees the expanded prompt and can edit it; the job then carries both texts (`prompt` = what runs,
`typed_prompt` = what was typed). The expander (MiniLM + the vocabulary, ~100 MB; or a local LM)
loads on first use, so an app that never expands never imports torch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seedling.backend.errors import JobError
from seedling.backend.specs import MAX_PROMPT

log = logging.getLogger(__name__)

# What the first expansion in a process waits for: loading MiniLM and the vocabulary and building
# the vocabulary's embedding index (the expander's constructor); docs/app.md has the figure.
WARM_UP = "loading the prompt expander (first use, about a minute)"

# (LM folder or None) -> an object with .expand(prompt, task, num_outputs, n_refs) -> ExpansionResult
ExpanderFactory = Callable[[Path | None], Any]


def load_default_expander(lm_folder: Path | None) -> Any:
    from seedling.model.prompt_expansion import load_expander

    return load_expander(lm_folder=lm_folder)


@dataclass(frozen=True)
class Resolved:
    """The prompt a job runs, and what to record as typed (None when expansion was off)."""

    prompt: str
    typed_prompt: str | None
    result: Any = None  # the ExpansionResult when expansion ran for this submit
    num_outputs: int | None = None  # the expansion's suggestion (storyboard panels)


class PromptExpansionService:
    def __init__(self, lm_folder: Path | None = None, factory: ExpanderFactory = load_default_expander):
        self.lm_folder = lm_folder
        self._factory = factory
        self._expander: Any = None
        self._lock = threading.Lock()
        self._loading_since: float | None = None  # monotonic time the load began, while it runs
        self._start_lock = threading.Lock()  # one background load, however often it is asked for
        # Gradio runs handlers in threads; an expansion takes ~10 ms, so one at a time is cheap and
        # keeps the expander's per-text cache and its torch thread setting single-threaded.
        self._call_lock = threading.Lock()

    @property
    def expander(self) -> Any:
        with self._lock:
            if self._expander is None:
                log.info("loading the prompt expander (%s)", self.lm_folder or "grounded")
                self._loading_since = time.monotonic()
                try:
                    self._expander = self._factory(self.lm_folder)
                finally:
                    self._loading_since = None
            return self._expander

    @property
    def ready(self) -> bool:
        """Loaded: an expansion answers in milliseconds."""
        return self._expander is not None

    def warm_up_note(self) -> str | None:
        """What a person about to wait for an expansion is told while the expander is not loaded
        (how long a load already in progress has taken); None once it is loaded."""
        if self._expander is not None:
            return None
        since = self._loading_since
        if since is None:
            return WARM_UP[0].upper() + WARM_UP[1:] + "…"
        return f"Still {WARM_UP}: {time.monotonic() - since:.0f} s so far…"

    def warm_up_in_background(self) -> bool:
        """Start loading the expander in a thread (someone turned expansion on: by the time they
        press Expand or Generate it may be ready); False when it is loaded or already loading."""
        with self._start_lock:
            if self._expander is not None or self._loading_since is not None:
                return False
            self._loading_since = time.monotonic()  # from now on the note says "still loading"

        def load() -> None:
            try:
                self.expander  # noqa: B018 - the property loads it
            except Exception:  # the next expand() raises it again, to the person who asked
                log.exception("loading the prompt expander failed")

        threading.Thread(target=load, name="prompt-expander-warm-up", daemon=True).start()
        return True

    def expand(self, prompt: str, task: str, num_outputs: int | None = None, n_refs: int | None = None):
        """An ExpansionResult (model/prompt_expansion/result.py) for `prompt` typed for `task`;
        ValueError (a sentence) for a prompt longer than a job may have."""
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"the prompt must be text, not {type(prompt).__name__}")
        if prompt and len(prompt) > MAX_PROMPT:
            raise ValueError(
                f"the prompt is {len(prompt):,} characters long; at most {MAX_PROMPT:,} are allowed: shorten it"
            )
        expander = self.expander
        with self._call_lock:
            return expander.expand(prompt or "", task, num_outputs=num_outputs, n_refs=n_refs)

    def resolve(
        self,
        typed: str,
        enabled: bool,
        edited: str | None,
        task: str,
        num_outputs: int | None = None,
        n_refs: int | None = None,
    ) -> Resolved:
        """What a job runs. Expansion off, or nothing typed: the typed prompt. On: the expanded
        prompt as shown (and possibly edited) in the UI, or, when none is shown yet, a fresh
        expansion; a fresh expansion that is not grounded raises NotGrounded instead of queueing a
        noisy job."""
        typed = (typed or "").strip()
        if not enabled or not (typed or (edited or "").strip()):
            return Resolved(typed, None)  # nothing typed: nothing to expand (an upscale needs no prompt)
        if edited and edited.strip():
            return Resolved(edited.strip(), typed)
        result = self.expand(typed, task, num_outputs=num_outputs, n_refs=n_refs)
        if not result.grounded:
            raise NotGrounded(result)
        return Resolved(result.prompt, typed, result, result.num_outputs)


class NotGrounded(JobError, ValueError):
    """Expansion found nothing in the model's vocabulary close to the prompt (nothing was queued)."""

    def __init__(self, result: Any):
        self.result = result
        super().__init__(" ".join(result.notes) or "the prompt is not in the model's vocabulary")


def notes_markdown(result) -> str:
    """The expansion's verdict for a person: grounded or not, what matched, what to do."""
    if result is None:
        return ""
    head = {
        "passthrough": "**In the model's vocabulary**: unchanged.",
        "rewrite": "**Rewritten** into words the model knows.",
        "decompose": "**Decomposed**: this needs more than one image.",
    }[result.budget]
    if not result.grounded:
        head = "⚠ **Not grounded**: nothing was expanded."
    lines = [head]
    matched = [m for m in result.matches if m.value and m.kind in ("icon", "shape")]
    if matched:
        lines.append(
            "Matched: " + ", ".join(f"“{m.phrase}” → **{m.value}** ({m.score:.2f})" for m in matched[:4])
        )
    lines += [f"- {n}" for n in result.notes if n != "Already in the model's vocabulary: unchanged."]
    if result.suggestion is not None:
        s = result.suggestion
        count = f" ({s.num_outputs} images)" if s.num_outputs and s.num_outputs > 1 else ""
        lines.append(f"Suggested: **{s.task}** with “{s.prompt}”{count}")
        lines += [f"{k + 1}. {step}" for k, step in enumerate(s.steps)]
    lines.append(f"<sub>{result.expander} · {result.seconds * 1000:.0f} ms</sub>")
    return "\n\n".join(lines)
