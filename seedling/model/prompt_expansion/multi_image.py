"""Plans for several images, mixed into the grounded expander: compositions and storyboards."""

from __future__ import annotations

from seedling.model.data.tasks import LAYOUTS
from seedling.model.prompt_expansion import lexicon as lx
from seedling.model.prompt_expansion import vocab as vc
from seedling.model.prompt_expansion.grounding import Grounding
from seedling.model.prompt_expansion.layouts import (
    arranged_layout,
    assign_slots,
    plan_panels,
    reference_boxes,
)
from seedling.model.prompt_expansion.parse import (
    arranged_refs,
    ordinal_refs,
    split_subjects,
)
from seedling.model.prompt_expansion.result import DECOMPOSE, REWRITE, ExpansionResult, Match, Suggestion
from seedling.model.prompt_expansion.story import Story, parse_story

MAX_PANELS = 6


class MultiImagePlans:
    """The compose and storyboard handlers of `GroundedExpander`, and its suggestion of a composition
    for several subjects. They use the expander's `ground`, `_noun`, `_match` and `_not_grounded`."""

    def _several(self, typed: str, parts: list[str], gs: list[Grounding]) -> ExpansionResult:
        """Several subjects: the model draws one icon per image, so suggest a composition."""
        notes = []
        if len(gs) > 4:
            notes.append("A composition takes up to 4 references: keeping the first 4 subjects.")
            parts, gs = parts[:4], gs[:4]
        wanted = [_cell_in(p) for p in parts]
        layout, assignment = assign_slots(len(gs), wanted)
        slots = LAYOUTS[layout][1]
        nouns = [self._noun(g, definite=True) for g in gs]
        compose = vc.compose_prompt(nouns, list(slots), assignment)
        singles = [self._noun(g) for g in gs]
        steps = tuple(f"Generate '{s}'" for s in singles) + (
            f"Send the {len(gs)} images to Compose and run '{compose}'",
        )
        notes.insert(
            0,
            f"{len(gs)} subjects: the model draws one subject per image. Generate each, then "
            f"compose them: '{compose}'. Here: the first one, '{singles[0]}'.",
        )
        return ExpansionResult(
            typed,
            singles[0],
            "t2i",
            DECOMPOSE,
            True,
            matches=[self._match(g) for g in gs],
            notes=notes,
            suggestion=Suggestion("compose", compose, 1, steps),
        )

    # -- compose ------------------------------------------------------------------------------
    def _compose(self, typed: str, text: str, n_refs: int | None = None, **_) -> ExpansionResult:
        notes: list[str] = []
        ordered = ordinal_refs(text)
        if ordered is not None:
            n = n_refs or len(ordered)
            if not 2 <= n <= 4:
                return _kept(typed, "compose", ["A composition places 2 to 4 reference images."])
            wanted: list[str | None] = [None] * n
            for idx, cells in ordered:
                if 0 <= idx < n:
                    wanted[idx] = cells[0]
            return self._compose_by_order(typed, *assign_slots(n, wanted))
        arranged = arranged_refs(text)
        if arranged is not None and n_refs and len(split_subjects(text)) < 2:
            layout = arranged_layout(arranged, n_refs)
            if layout is None:
                where = "side by side" if arranged == "row" else "in a grid"
                fits = "2 or 3" if arranged == "row" else "3 or 4"
                why = f"{n_refs} references do not go {where}: that takes {fits}"
                return _kept(typed, "compose", [f"{why}; or say where each goes."])
            return self._compose_by_order(typed, layout, list(range(n_refs)))
        parts = split_subjects(text)
        n = n_refs or len(parts)
        if n_refs and len(parts) != n_refs:
            notes.append(f"The prompt names {len(parts)} subject(s) for {n_refs} reference image(s).")
        if not 2 <= n <= 4 or len(parts) < n:
            example = "'the cat on the left and the dog on the right'"
            return _kept(typed, "compose", [*notes, f"Name each reference and where it goes: {example}."])
        parts = parts[:n]
        gs = self.ground(parts)
        if not all(g.grounded for g in gs):
            return self._not_grounded(typed, "compose", gs)
        layout, assignment = assign_slots(n, [_cell_in(p) for p in parts])
        nouns = [self._noun(g, definite=True) for g in gs]
        prompt = vc.compose_prompt(nouns, list(LAYOUTS[layout][1]), assignment)
        return ExpansionResult(
            typed, prompt, "compose", REWRITE, True, matches=[self._match(g) for g in gs], notes=notes,
            boxes=reference_boxes(layout, assignment),
        )  # fmt: skip

    def _compose_by_order(self, typed: str, layout: str, assignment: list[int]) -> ExpansionResult:
        """References placed by their order ('the first image on the left ...')."""
        slots = LAYOUTS[layout][1]
        prompt = vc.compose_by_order_prompt(list(slots), assignment)
        matches = [Match(f"reference {i + 1}", "position", slots[s], 1.0) for s, i in enumerate(assignment)]
        return ExpansionResult(
            typed, prompt, "compose", REWRITE, True, matches=matches, boxes=reference_boxes(layout, assignment)
        )

    # -- storyboard ---------------------------------------------------------------------------
    def _storyboard(self, typed: str, text: str, num_outputs: int | None = None, **_) -> ExpansionResult:
        story = parse_story(text) or Story(None, [text])
        notes: list[str] = []
        texts = story.panels
        if len(texts) > MAX_PANELS:
            notes.append(f"A storyboard has at most {MAX_PANELS} panels: keeping the first {MAX_PANELS}.")
            texts = texts[:MAX_PANELS]
        n = len(texts) if len(texts) >= 2 else (num_outputs or 4)
        if story.character:
            (g,) = self.ground([story.character])
        else:
            (g,) = self.ground([texts[0]], prefixes=True)
        if not g.grounded or g.kind != "icon":
            return self._not_grounded(typed, "storyboard", [g])
        panels, panel_notes, matches = plan_panels(texts if len(texts) >= 2 else texts * n, n)
        prompt = vc.storyboard_prompt(self._noun(g), panels)
        budget = DECOMPOSE if len(texts) >= 2 else REWRITE
        return ExpansionResult(
            typed,
            prompt,
            "storyboard",
            budget,
            True,
            num_outputs=n,
            matches=[self._match(g)] + matches,
            notes=notes + panel_notes,
        )


def _kept(typed: str, task: str, notes: list[str], matches: list[Match] | None = None) -> ExpansionResult:
    """The prompt left as typed and marked not grounded: the model cannot draw it as it stands, and
    `notes` say what it needs instead."""
    return ExpansionResult(typed, typed, task, REWRITE, False, matches=matches or [], notes=notes)


def _cell_in(phrase: str) -> str | None:
    tokens = lx.tokenize(phrase)
    for i in range(len(tokens)):
        pos = lx.on_top_at(tokens, i) or lx.position_at(tokens, i)
        if pos and len(pos[0]) == 1:
            return pos[0][0]
    return None
