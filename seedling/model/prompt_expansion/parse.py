"""Parse a free-form prompt: quoted text, chart values, shape objects (count, colour, shape,
position), subjects and compose references; story structure is `story.py`.

Pure functions of strings, no model: the grounding of open-class subjects is `grounding.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from seedling.model.prompt_expansion import lexicon as lx

# --------------------------------------------------------------------------------------------
# Quoted text
# --------------------------------------------------------------------------------------------

# "..." and “...” anywhere; '...' and ‘...’ only as whole quotes (not the apostrophe of "it's").
_QUOTES = re.compile(r"\"([^\"]+)\"|“([^”]+)”|(?:(?<=^)|(?<=[\s:(]))['‘]([^'’]+)['’](?=$|[\s.,;:!?)])")
_UNQUOTED_WORD = re.compile(
    r"\b(?:the\s+)?(?:word|text|letters|lettering|caption|title)\s+(?:of\s+)?([A-Za-z]{1,12})\b(?!\s+(?:and|is|in|on|at|with|that))"
)
_SAYING = re.compile(
    r"\b(?:says|saying|reads|reading|spelling|spells|spelled|that says)\s+([A-Za-z]{1,12})\s*[.!]?\s*$"
)
_NOT_A_WORD = frozenset(
    {
        "a",
        "an",
        "the",
        "in",
        "on",
        "at",
        "with",
        "and",
        "that",
        "this",
        "it",
        "written",
        "big",
        "large",
        "bold",
        "red",
        "blue",
        "green",
        "black",
    }
)


def quoted_texts(text: str) -> list[str]:
    """Text between quotes, in order: '"open"', '“open”', and '\\'open\\'' when it is a whole quote."""
    return [next(g for g in m.groups() if g is not None).strip() for m in _QUOTES.finditer(text)]


def word_to_render(text: str) -> str | None:
    """The text a prompt asks to render: a quoted string, else 'the word hello' / 'saying hello'."""
    quoted = quoted_texts(text)
    if quoted:
        return quoted[0]
    for pattern in (_UNQUOTED_WORD, _SAYING):
        m = pattern.search(text)
        if m and m.group(1).lower() not in _NOT_A_WORD:
            return m.group(1)
    return None


def strip_quotes(text: str) -> str:
    return _QUOTES.sub(" ", text)


# --------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------

_CHART_WORDS = re.compile(
    r"\b(?:bar\s*(?:chart|graph|plot)s?|charts?|graphs?|histograms?|column\s+chart|bars)\b"
)
_VALUE = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine)\b")
_VALUE_WORDS = {
    w: n
    for w, n in lx.NUMBER_WORDS.items()
    if w.isalpha()
    and n <= 9
    and w in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
}


@dataclass
class ChartRequest:
    values: list[int]
    colors: list[str] | None  # palette colour per bar when the prompt gives one per bar
    out_of_range: list[int] = field(default_factory=list)  # values the model cannot draw (not 1..9)


def parse_chart(text: str) -> ChartRequest | None:
    """Bar values of a chart prompt ('a bar graph showing 3, 7 and 5'), or None if not a chart.

    A count word before "bars" ('three bars: 5, 2, 8') is the number of bars, not a value.
    """
    low = text.lower()
    if not _CHART_WORDS.search(low):
        return None
    low = re.sub(r"\b(one|two|three|four|five|six|seven|eight|nine|\d)\s+bars\b", " bars", low)
    tokens = lx.tokenize(low)
    values: list[int] = []
    colors: list[str] = []
    bad: list[int] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        color = lx.ambiguous_color_at(tokens, i)
        if color and i + color[1] < len(tokens) and _VALUE.fullmatch(tokens[i + color[1]]):
            colors.append(lx.to_palette(color[0]))
            i += color[1]
            continue
        if _VALUE.fullmatch(t):
            v = int(t) if t.isdigit() else _VALUE_WORDS[t]
            (values if 1 <= v <= 9 else bad).append(v)
        i += 1
    if not values and not bad:
        return None
    colors_ok = len(colors) == len(values) and "black" not in colors
    return ChartRequest(values, colors if colors_ok else None, bad)


# --------------------------------------------------------------------------------------------
# Shape objects
# --------------------------------------------------------------------------------------------


@dataclass
class ObjectMention:
    shape: str  # one of kn.SHAPES
    color: str | None  # palette colour
    color_word: str | None  # what the prompt said ("crimson")
    count: int | None  # explicit count
    cells: list[str] = field(default_factory=list)  # explicit positions
    strong: bool = False  # a colour, count or position says this is a shape, not an icon


@dataclass
class Relation:
    kind: str  # "above", "below", "left", "right", "beside"
    a: int  # object index
    b: int


@dataclass
class ShapeScenePlan:
    objects: list[ObjectMention]
    relations: list[Relation]
    arrangement: str | None  # "row" ("in a row", "side by side") or None


_RELATIONS = [
    (("on", "top", "of"), "above"),
    (("to", "the", "left", "of"), "left"),
    (("to", "the", "right", "of"), "right"),
    (("left", "of"), "left"),
    (("right", "of"), "right"),
    (("next", "to"), "beside"),
    (("above",), "above"),
    (("over",), "above"),
    (("below",), "below"),
    (("under",), "below"),
    (("beneath",), "below"),
    (("underneath",), "below"),
    (("beside",), "beside"),
    (("by",), "beside"),
]
_ROW_WORDS = [
    ("in", "a", "row"),
    ("in", "a", "line"),
    ("side", "by", "side"),
    ("next", "to", "each", "other"),
    ("in", "a", "horizontal", "row"),
]


def _starts_mention(tokens: list[str], i: int) -> bool:
    """Does an object mention ("a blue square", "two red dots") start at token i?"""
    j = i
    while j < len(tokens) and (tokens[j] in lx.ARTICLES or tokens[j] in lx.NUMBER_WORDS or tokens[j] == "of"):
        j += 1
    c = lx.ambiguous_color_at(tokens, j)
    if c:
        j += c[1]
    return j < len(tokens) and tokens[j] in lx.SHAPE_WORDS


def parse_shapes(text: str) -> ShapeScenePlan | None:
    """Shape objects of a prompt, with their counts, colours and positions; None if there are none.

    Positions after an object belong to it ("a red circle at the top left and on the right");
    a position before the first object belongs to it. Relations ("a red circle above a blue
    square") and arrangements ("three dots in a row") are kept for the caller to resolve.
    """
    tokens = lx.tokenize(strip_quotes(text))
    objects: list[ObjectMention] = []
    relations: list[Relation] = []
    arrangement = None
    pending_count: int | None = None
    pending_color: tuple[str, str] | None = None
    pending_cells: list[str] = []
    pending_relation: str | None = None
    i = 0
    while i < len(tokens):
        t = tokens[i]
        rel = next((kind for words, kind in _RELATIONS if tuple(tokens[i : i + len(words)]) == words), None)
        if rel and objects:
            n = next(len(w) for w, k in _RELATIONS if k == rel and tuple(tokens[i : i + len(w)]) == w)
            if _starts_mention(tokens, i + n):
                pending_relation = rel
                i += n
                continue
        row = next((w for w in _ROW_WORDS if tuple(tokens[i : i + len(w)]) == w), None)
        if row:
            arrangement = "row"
            i += len(row)
            continue
        pos = lx.on_top_at(tokens, i) or lx.position_at(tokens, i)
        if pos:
            cells, n = pos
            if objects and pending_color is None and pending_count is None:
                objects[-1].cells.extend(cells)
                objects[-1].strong = True
            else:
                pending_cells.extend(cells)
            i += n
            continue
        if (
            t in ("one", "another", "each")
            and objects
            and (lx.on_top_at(tokens, i + 1) or lx.position_at(tokens, i + 1))
        ):
            i += 1  # "two dots, one on the left and one on the right": places of the last object
            continue
        if t in ("pair", "couple") and i + 1 < len(tokens) and tokens[i + 1] == "of":
            pending_count = 2
            i += 2
            continue
        if (
            t in lx.NUMBER_WORDS
            and t not in ("a", "an")
            and not (t.isdigit() and i + 1 < len(tokens) and tokens[i + 1] in ("o'clock", "o’clock"))
        ):
            pending_count = lx.NUMBER_WORDS[t]
            i += 1
            continue
        color = lx.color_at(tokens, i) or (
            lx.ambiguous_color_at(tokens, i) if _starts_mention(tokens, i) else None
        )
        if color:
            pending_color = (lx.to_palette(color[0]), color[0])
            i += color[1]
            continue
        if t in lx.SHAPE_WORDS:
            mention = ObjectMention(
                shape=lx.SHAPE_WORDS[t],
                color=pending_color[0] if pending_color else None,
                color_word=pending_color[1] if pending_color else None,
                count=pending_count,
                cells=list(pending_cells),
            )
            mention.strong = bool(
                pending_color or (pending_count and pending_count > 1) or pending_cells
            ) or (t not in lx.WEAK_SHAPE_WORDS)
            if pending_relation:
                relations.append(Relation(pending_relation, len(objects) - 1, len(objects)))
                pending_relation = None
            objects.append(mention)
            pending_count, pending_color, pending_cells = None, None, []
            i += 1
            continue
        if t in ("and", ",", "with", "plus", "&", "one", "another"):
            pending_color = None if t != "one" else pending_color
        i += 1
    if not objects:
        return None
    if pending_cells:  # "... and one at the bottom": a trailing position without an object
        objects[-1].cells.extend(pending_cells)
        objects[-1].strong = True
    return ShapeScenePlan(objects, relations, arrangement)


def is_shape_prompt(plan: ShapeScenePlan | None) -> bool:
    """True when the objects are shapes to draw, not part of an icon's name ("a soccer ball")."""
    return (
        plan is not None
        and any(o.strong for o in plan.objects)
        and all(o.strong or o.color or o.cells for o in plan.objects)
    )


# --------------------------------------------------------------------------------------------
# Subjects
# --------------------------------------------------------------------------------------------

_SUBJECT_SPLIT = re.compile(
    r"\s*(?:,\s*(?:and\s+)?|\band\b|\bnext to\b|\bbeside\b|\balongside\b|\bplus\b|&|\bas well as\b|\btogether with\b|"
    r"\bbetween\b|\bfollowed by\b|\bversus\b|\bvs\b)\s*"
)


def clean_subject(text: str) -> list[str]:
    """Tokens of a subject phrase without request fillers ("draw me", "an image of") and articles."""
    tokens = [t for t in lx.tokenize(strip_quotes(text)) if t not in (".", "!", "?", ":", ";")]
    changed = True
    while changed and tokens:
        changed = False
        for prefix in lx.FILLER_PREFIXES:
            if tuple(tokens[: len(prefix)]) == prefix and len(tokens) > len(prefix):
                tokens = tokens[len(prefix) :]
                changed = True
        while len(tokens) > 1 and (tokens[0] in lx.ARTICLES or tokens[0] in ("of", "with", ",")):
            tokens = tokens[1:]
            changed = True
    return tokens


def drop_positions(tokens: list[str]) -> list[str]:
    """Tokens without prepositional position phrases ("on the left"): icons are always centred."""
    out, i = [], 0
    while i < len(tokens):
        pos = lx.position_at(tokens, i) if tokens[i] in lx.POSITION_PREPOSITIONS else None
        if pos:
            i += pos[1]
            continue
        out.append(tokens[i])
        i += 1
    return out


def core_subject(tokens: list[str], cut_participles: bool = False) -> list[str]:
    """The subject without decorative adjectives and trailing context: 'cheerful fox waving on a
    sunny day' -> 'fox waving' ('fox' with `cut_participles`). Keeps at least one word."""
    words = [t for t in tokens if t not in lx.DECORATIVE] or tokens[-1:]
    for k, t in enumerate(words):
        if k > 0 and (t in lx.CONTEXT_WORDS or (cut_participles and t.endswith("ing") and len(t) > 4)):
            words = words[:k]
            break
    return words


def split_subjects(text: str) -> list[str]:
    """Subject phrases of a prompt: 'a fox and a kitty' -> ['a fox', 'a kitty'] (one when none split)."""
    parts = [p for p in _SUBJECT_SPLIT.split(strip_quotes(text)) if p and p.strip(" ,.")]
    return parts or [text]


def ordinal_refs(text: str) -> list[tuple[int, tuple[str, ...]]] | None:
    """[(reference index, cells)] for 'the first image on the left, the second on the right' (or
    'image 1 ...', 'picture #2 ...'), None when the prompt does not name references by order."""
    tokens = lx.tokenize(text)
    ords = {"first": 0, "second": 1, "third": 2, "fourth": 3, "1st": 0, "2nd": 1, "3rd": 2, "4th": 3}
    nouns = {"image", "picture", "photo", "pic", "one", "reference", "ref", "img", "icon", "input"}
    found: list[tuple[int, tuple[str, ...]]] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        idx = None
        if t in ords and (i + 1 < len(tokens) and tokens[i + 1] in nouns or i + 1 < len(tokens)):
            idx, i = ords[t], i + 1
            if i < len(tokens) and tokens[i] in nouns:
                i += 1
        elif t in nouns and i + 1 < len(tokens) and tokens[i + 1].isdigit():
            idx, i = int(tokens[i + 1]) - 1, i + 2
        if idx is None:
            i += 1
            continue
        cells: tuple[str, ...] = ()
        while i < len(tokens) and not cells:
            if tokens[i] in ords or (tokens[i] in nouns and i + 1 < len(tokens) and tokens[i + 1].isdigit()):
                break
            pos = lx.on_top_at(tokens, i) or lx.position_at(tokens, i)
            if pos:
                cells = pos[0]
                i += pos[1]
            else:
                i += 1
        found.append((idx, cells))
    return found if len(found) >= 2 and all(c for _, c in found) else None


_GRID_WORDS = [("in", "a", "grid"), ("in", "the", "corners"), ("in", "the", "four", "corners"), ("2x2",)]


def arranged_refs(text: str) -> str | None:
    """'row' for 'put them side by side' / 'in a row', 'grid' for 'in a grid' / 'in the corners':
    references placed without naming or numbering them (None when the prompt says neither)."""
    tokens = lx.tokenize(text)
    for kind, phrases in (("row", _ROW_WORDS), ("grid", _GRID_WORDS)):
        for i in range(len(tokens)):
            if any(tuple(tokens[i : i + len(w)]) == w for w in phrases):
                return kind
    return None
