"""Parse story prompts: the panels of a sequence ("first ..., then ...") and each panel's scene words."""

from __future__ import annotations

import re
from dataclasses import dataclass

from seedling.model.prompt_expansion import lexicon as lx
from seedling.model.prompt_expansion.parse import strip_quotes

_STEP = re.compile(
    r"(?:\s*;\s*|\n+|,?\s*\b(?:and\s+)?then\b\s*|,?\s*\bnext\b(?!\s+to\b),?\s*|,?\s*\b(?:and\s+)?(?:finally|lastly|eventually)\b,?\s*|"
    r",?\s*\bafter\s+that\b,?\s*|,?\s*\bafterwards\b,?\s*|,?\s*\blater\b,?\s*|,?\s*\bin\s+the\s+end\b,?\s*|"
    r"(?<=[.!])\s+)",
    re.IGNORECASE,
)
_FIRST = re.compile(
    r"^\s*(?:first(?:ly)?|at\s+first|in\s+the\s+beginning|to\s+begin(?:\s+with)?)\b,?\s*", re.IGNORECASE
)
_STORY_HEAD = re.compile(
    r"^\s*(?:(?:(?:a|the)\s+)?(?:short\s+|little\s+)?(?:story|storyboard|comic(?:\s+strip)?|sequence|tale)\s+(?:of|about|with)\s+)?"
    r"(?P<head>[^:;]{1,60}?)\s*:\s*(?P<rest>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_STORY_CUE = re.compile(
    r"\b(?:then|next(?!\s+to\b)|finally|lastly|afterwards|after that|first|later|eventually)\b|;|\n",
    re.IGNORECASE,
)


@dataclass
class Story:
    character: str | None  # the phrase naming the character, when a header gives it ("a cat: ...")
    panels: list[str]  # one text per panel


def parse_story(text: str) -> Story | None:
    """Panels of a story prompt, or None when the prompt is not a sequence.

    'first the fox wakes up, then it runs, finally it sleeps' -> 3 panels; 'a cat: plays; eats;
    sleeps' -> character 'a cat' and 3 panels. Needs a sequence cue (then, next, finally, first,
    after that, ';', a new line) and at least two panels.
    """
    if not _STORY_CUE.search(strip_quotes(text)):
        return None
    character = None
    body = text
    m = _STORY_HEAD.match(text)
    if m and not _STORY_CUE.search(m["head"]):
        character, body = m["head"].strip(), m["rest"]
    body = _FIRST.sub("", body.strip())
    panels = [p.strip(" ,.;") for p in _STEP.split(body)]
    panels = [_FIRST.sub("", p).strip(" ,.;") for p in panels if p and p.strip(" ,.;")]
    if len(panels) < 2:
        return None
    return Story(character, panels)


def panel_scene(text: str) -> dict:
    """Size, position and background words of one panel ('runs far away into the forest')."""
    tokens = lx.tokenize(text)
    size = next((lx.PANEL_SIZE_WORDS[t] for t in tokens if t in lx.PANEL_SIZE_WORDS), None)
    if "close" in tokens and "up" in tokens:
        size = "large"
    position = None
    background = None
    for i in range(len(tokens)):
        if position is None and tokens[i] in lx.POSITION_PREPOSITIONS:
            pos = lx.position_at(tokens, i)
            if pos and len(pos[0]) == 1:
                position = pos[0][0]
        if background is None and tokens[i] == "background" and i > 0:  # "on a pink background"
            c = lx.color_at(tokens, i - 1) or lx.ambiguous_color_at(tokens, i - 1)
            if c is None and i > 1:
                c = lx.color_at(tokens, i - 2) or lx.ambiguous_color_at(tokens, i - 2)
            if c:
                background = lx.to_background(c[0])
    if background is None:
        for i, t in enumerate(tokens):
            c = lx.color_at(tokens, i)
            if c and c[0] in lx.COLOR_RGB and t not in lx.COLOR_MODIFIERS:
                background = lx.to_background(c[0])
                break
    if background is None:
        background = next((lx.SCENE_BACKGROUNDS[t] for t in tokens if t in lx.SCENE_BACKGROUNDS), None)
    return {"size": size, "position": position, "background": background}
