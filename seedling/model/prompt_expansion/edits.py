"""Free-form edit instructions -> the edit instructions the model was trained on.

The model edits shape scenes, words and backgrounds: recolour / add / remove / move a shape,
change the background colour, change the word. "get rid of the green triangle" becomes "remove
the green triangle"; "paint the backdrop sky blue" becomes "make the background light blue".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seedling.model.prompt_expansion import lexicon as lx
from seedling.model.prompt_expansion import vocab as vc
from seedling.model.prompt_expansion.parse import quoted_texts, strip_quotes, word_to_render
from seedling.model.prompt_expansion.result import Match

REMOVE_PHRASES = [
    tuple(p.split())
    for p in (
        "get rid of",
        "take away",
        "take out",
        "wipe out",
        "wipe away",
        "cut out",
        "rub out",
        "do away with",
        "clear away",
    )
]
REMOVE_VERBS = frozenset(
    {
        "remove",
        "delete",
        "erase",
        "eliminate",
        "discard",
        "clear",
        "drop",
        "ditch",
        "hide",
        "lose",
        "omit",
        "kill",
    }
)
ADD_VERBS = frozenset(
    {
        "add",
        "insert",
        "place",
        "put",
        "draw",
        "include",
        "stick",
        "create",
        "append",
        "introduce",
        "give",
        "paint",
        "sketch",
        "drop",
        "throw",
        "plop",
    }
)
MOVE_VERBS = frozenset(
    {
        "move",
        "shift",
        "slide",
        "drag",
        "relocate",
        "push",
        "bring",
        "reposition",
        "put",
        "nudge",
        "transfer",
        "send",
        "take",
        "place",
    }
)
RECOLOR_VERBS = frozenset(
    {
        "make",
        "turn",
        "change",
        "recolor",
        "recolour",
        "paint",
        "color",
        "colour",
        "dye",
        "tint",
        "switch",
        "swap",
        "convert",
        "fill",
        "set",
        "shade",
    }
)
BACKGROUND_WORDS = frozenset(
    {"background", "backdrop", "bg", "backround", "backgrounds", "canvas", "surroundings"}
)
NAME_THE_SHAPE = (
    "The model edits shapes (recolour, add, remove, move), the background colour and words; "
    "name the shape, e.g. 'the red circle'."
)
NOT_AN_EDIT = (
    "Not understood as an edit the model knows: recolour ('make the red circle blue'), add, remove or "
    "move a shape, change the background colour, or change the word."
)


@dataclass
class EditPlan:
    prompt: str | None  # the training-form instruction, None when the instruction is not understood
    kind: str | None  # recolor / background / add / remove / move / word
    matches: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _colors(tokens: list[str]) -> list[tuple[int, int, str, str]]:
    """(start, end, palette-or-background name, word) of every colour phrase, in order."""
    out, i = [], 0
    while i < len(tokens):
        c = lx.color_at(tokens, i)
        if (
            c is None
            and i + 1 < len(tokens)
            and (
                tokens[i + 1] in lx.SHAPE_WORDS
                or tokens[i + 1] in lx.COLOR_RGB
                or tokens[i + 1] in BACKGROUND_WORDS
            )
        ):
            c = lx.ambiguous_color_at(tokens, i)
        if (
            c is None
            and tokens[i] in lx.COLOR_RGB
            and (
                i + 1 == len(tokens)
                or tokens[i + 1]
                in ("one", "instead", "please", ",", ".", "!", "and", "color", "colour", "now")
            )
        ):
            c = (tokens[i], 1)  # "paint it gold", "make the background lemon"
        if c:
            out.append((i, i + c[1], c[0], " ".join(tokens[i : i + c[1]])))
            i += c[1]
        else:
            i += 1
    return out


def _has_phrase(tokens: list[str], phrases) -> bool:
    return any(tuple(tokens[i : i + len(p)]) == p for p in phrases for i in range(len(tokens)))


def _position_after(tokens: list[str], start: int) -> tuple[str, str, int] | None:
    """(cell, phrase, token index) of the first single-cell position phrase at or after `start`."""
    for i in range(start, len(tokens)):
        pos = lx.on_top_at(tokens, i) or lx.position_at(tokens, i)
        if pos and len(pos[0]) == 1:
            return pos[0][0], " ".join(tokens[i : i + pos[1]]), i
    return None


def plan_edit(text: str) -> EditPlan:
    """The training-form edit for a free-form instruction (see the module docstring)."""
    quoted = quoted_texts(text)
    if len(quoted) >= 2:
        old, new = quoted[0], quoted[1]
        return EditPlan(vc.word_change_instruction(old, new), "word", [Match(f'"{new}"', "text", new, 1.0)])
    word = quoted[0] if quoted else None
    tokens = lx.tokenize(strip_quotes(text))
    if word is None and any(t in ("word", "text", "say", "says", "read", "reads", "spell") for t in tokens):
        word = word_to_render(text)
    if word:
        return EditPlan(
            vc.word_change_instruction(None, word), "word", [Match(f'"{word}"', "text", word, 1.0)]
        )

    colors = _colors(tokens)
    shape_at = next((i for i, t in enumerate(tokens) if t in lx.SHAPE_WORDS), None)
    matches: list[Match] = []
    notes: list[str] = []

    if any(t in BACKGROUND_WORDS for t in tokens):
        if colors:
            _, _, name, said = colors[-1]
            bg = lx.to_background(name)
            matches.append(Match(said, "background", bg, 1.0))
            if bg != name and name not in lx.COLOR_RGB:
                notes.append(f"'{said}' is not a background the model knows; using {bg}.")
            return EditPlan(vc.background_instruction(bg), "background", matches, notes)
        return EditPlan(
            None, "background", [], ["Say which colour the background should be (e.g. 'light blue')."]
        )

    if shape_at is None:
        return EditPlan(None, None, [], [NAME_THE_SHAPE])
    shape = lx.SHAPE_WORDS[tokens[shape_at]]
    before = [c for c in colors if c[1] <= shape_at]
    after = [c for c in colors if c[0] > shape_at]
    ref_color = lx.to_palette(before[-1][2]) if before and before[-1][1] >= shape_at - 1 else None
    if ref_color:
        matches.append(Match(before[-1][3], "color", ref_color, 1.0))
    matches.append(Match(tokens[shape_at], "shape", shape, 1.0))
    verbs = set(tokens[: shape_at + 1])
    indefinite = shape_at > 0 and any(
        t in ("a", "an", "another", "one", "new") for t in tokens[max(0, shape_at - 4) : shape_at]
    )

    if _has_phrase(tokens, REMOVE_PHRASES) or verbs & REMOVE_VERBS and not indefinite:
        pos = _position_after(tokens, shape_at + 1)
        ref = vc.object_ref(ref_color, shape, pos[0] if pos else None)
        if pos:
            matches.append(Match(pos[1], "position", pos[0], 1.0))
        if ref_color is None:
            notes.append("Name the shape's colour ('the red circle'): the model was trained on that.")
        return EditPlan(vc.remove_instruction(ref), "remove", matches, notes)

    pos = _position_after(tokens, shape_at + 1)
    if indefinite and verbs & ADD_VERBS:
        color = ref_color
        if color is None:
            color = "black"
            notes.append("No colour given for the new shape: using black.")
        cell = pos[0] if pos else "center"
        if pos:
            matches.append(Match(pos[1], "position", cell, 1.0))
        else:
            notes.append("No place given for the new shape: adding it in the center.")
        return EditPlan(vc.add_instruction(color, shape, cell), "add", matches, notes)

    if pos and verbs & MOVE_VERBS and not after:
        matches.append(Match(pos[1], "position", pos[0], 1.0))
        ref = vc.object_ref(ref_color, shape)
        if ref_color is None:
            notes.append("Name the shape's colour ('the red circle'): the model was trained on that.")
        return EditPlan(vc.move_instruction(ref, pos[0]), "move", matches, notes)

    if after:
        _, _, name, said = after[0]
        new = lx.to_palette(name)
        matches.append(Match(said, "color", new, 1.0))
        ref_cell = None
        if pos and pos[2] < after[0][0]:
            ref_cell = pos[0]  # "make the circle on the left blue": which circle
            matches.append(Match(pos[1], "position", ref_cell, 1.0))
        ref = vc.object_ref(ref_color, shape, ref_cell)
        if ref_color is None:
            notes.append("Name the shape's current colour ('the red circle'): the model was trained on that.")
        return EditPlan(vc.recolor_instruction(ref, new), "recolor", matches, notes)

    return EditPlan(None, None, matches, [NOT_AN_EDIT])
