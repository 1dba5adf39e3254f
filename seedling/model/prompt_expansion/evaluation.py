"""Grounding accuracy on a labelled prompt set (tests/data/pe_prompts.jsonl).

Each row names the prompt, the task it is typed for, its kind and what it should resolve to:

    {"prompt": "a little kitty", "task": "t2i", "kind": "icon", "icons": ["cat", "cat face"]}
    {"prompt": "a crimson ball in the upper left corner", "kind": "shapes",
     "objects": [["red", "circle", "top left"]], ...}
    {"prompt": "quantum entanglement", "kind": "none", ...}           # must be "not grounded"

`expected_prompts` gives the training captions a row accepts; `is_correct` judges a result.
"""

from __future__ import annotations

import json
from pathlib import Path

from seedling.model.prompt_expansion import vocab as vc
from seedling.model.prompt_expansion.result import ExpansionResult
from seedling.model.prompt_expansion.vocab import Vocabulary

KINDS = ("icon", "shapes", "word", "chart", "none", "story", "several", "compose", "edit", "inpaint", "style")


def load_prompt_set(path: str | Path) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for r in rows:
        if r.get("kind") not in KINDS:
            raise ValueError(f"row {r!r}: kind must be one of {KINDS}")
    return rows


def expected_prompts(row: dict, vocab: Vocabulary) -> list[str]:
    """The expanded prompts a row accepts (empty for kinds judged otherwise)."""
    kind = row["kind"]
    if kind == "icon":
        return [vocab.icon(n).noun() for n in row["icons"]]
    if kind == "shapes":
        return [vc.scene_caption([tuple(o) for o in row["objects"]])]
    if kind == "word":
        return [vc.text_caption(row["text"], row.get("color", "black"), row.get("font", "default"))]
    if kind == "chart":
        return [vc.chart_caption(row["values"])]
    if kind in ("compose", "edit", "inpaint", "style"):
        return list(row["expect"])
    return []


def is_correct(row: dict, result: ExpansionResult, vocab: Vocabulary) -> bool:
    kind = row["kind"]
    if kind == "none":
        return not result.grounded
    if not result.grounded:
        return False
    if kind == "story":
        nouns = [vocab.icon(n).noun() for n in row["character"]]
        return result.num_outputs == row["panels"] and any(
            result.prompt.startswith(f"a storyboard of {n}: ") for n in nouns
        )
    if kind == "several":
        got = [m.value for m in result.matches if m.kind == "icon"]
        return (
            result.suggestion is not None
            and result.suggestion.task == "compose"
            and len(got) == len(row["subjects"])
            and all(g in names for g, names in zip(got, row["subjects"]))
        )
    return result.prompt in expected_prompts(row, vocab)
