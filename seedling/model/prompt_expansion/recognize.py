"""Is a prompt already in the model's vocabulary? One grammar per training-caption family.

The grammars follow `model/data/captions.py` phrase for phrase (every phrasing, every cell
phrase, every icon name), so a training caption is recognised whatever phrasing the generator
picked; the word, edit, inpaint and style families are compiled from its phrasing templates. Matching ignores letter case outside quotes (the MiniLM tokenizer is uncased) and is
strict about everything else: a recognised prompt passes through unchanged.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from seedling.model.data import captions as cap
from seedling.model.data import knowledge as kn
from seedling.model.data import tasks as tk
from seedling.model.data.glyphs import FONT_WORDS
from seedling.model.prompt_expansion.vocab import CELL_PHRASES, SLOT_PHRASES, Vocabulary

FAMILY_TASK = {
    "icon": "t2i",
    "shapes": "t2i",
    "word": "t2i",
    "chart": "t2i",
    "recolor": "edit",
    "background": "edit",
    "add": "edit",
    "remove": "edit",
    "move": "edit",
    "word_edit": "edit",
    "inpaint": "inpaint",
    "compose": "compose",
    "storyboard": "storyboard",
    "style": "style",
}


@dataclass(frozen=True)
class Recognized:
    family: str  # key of FAMILY_TASK
    task: str
    num_outputs: int | None = None  # storyboard panels
    n_refs: int | None = None  # compose references
    names: tuple[str, ...] = field(default=())  # icon names the prompt uses
    # compose: each reference's slot phrase, in reference order (by ordinal, else by mention order)
    slots: tuple[str, ...] = field(default=())


def _alt(words) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


def _templates(templates: tuple[str, ...], **fields: str) -> list[re.Pattern]:
    """One pattern per caption template of captions.py: its text as it is, each {field} replaced
    by the regex given for it."""
    patterns = []
    for template in templates:
        parts = [
            re.escape(text) + (fields[name] if name is not None else "")
            for text, name, _, _ in string.Formatter().parse(template)
        ]
        patterns.append(re.compile("".join(parts)))
    return patterns


COLOR = _alt(kn.COLORS)
SHAPE = _alt(kn.SHAPES)
SHAPES_PL = _alt(cap.plural(s) for s in kn.SHAPES)
NUM = _alt(cap.NUMBER_WORDS[n] for n in cap.NUMBER_WORDS if n >= 2)
NUM_ANY = _alt(cap.NUMBER_WORDS.values())
CP = _alt(CELL_PHRASES)
CELL = _alt(kn.CELLS)
BG = _alt(kn.BACKGROUNDS)
BAR_COLOR = _alt(c for c in kn.COLORS if c != "black")
V = "[1-9]"
SLOT = _alt(SLOT_PHRASES)
PANEL_CP = _alt(cap.cell_phrase(c) for c in tk.PANEL_POSITIONS if c != "center")
_WORD_TO_NUM = {w: n for n, w in cap.NUMBER_WORDS.items()}

_OBJ = rf"(?:a|an) (?:{COLOR}) (?:{SHAPE})"
_SCENE_PART = rf"(?:{_OBJ}|(?:{NUM}) (?:{COLOR}) (?:{SHAPES_PL})) (?:{CP})(?:(?:, | and )(?:{CP}))*"
_SCENE_PART_G = re.compile(
    rf"(?:(?:a|an) (?:{COLOR}) (?:{SHAPE})|(?P<n>{NUM}) (?:{COLOR}) (?:{SHAPES_PL})) "
    rf"(?P<where>(?:{CP})(?:(?:, | and )(?:{CP}))*)"
)
_SCENE_BODY = re.compile(rf"{_SCENE_PART}(?:(?:, | and ){_SCENE_PART})*")
_TERSE_PART = rf"(?:(?:{COLOR}) (?:{SHAPE})|(?:{NUM}) (?:{COLOR}) (?:{SHAPES_PL})) (?:{CELL})(?:(?:, | and )(?:{CELL}))*"
_TERSE_PART_G = re.compile(
    rf"(?:(?:{COLOR}) (?:{SHAPE})|(?P<n>{NUM}) (?:{COLOR}) (?:{SHAPES_PL})) "
    rf"(?P<where>(?:{CELL})(?:(?:, | and )(?:{CELL}))*)"
)
_TERSE_BODY = re.compile(rf"{_TERSE_PART}(?:, {_TERSE_PART})*")
_SCENE_HEAD = re.compile(rf"(?:a white image with |(?P<n>{NUM_ANY}) shapes?: )?(?P<body>.+)")

_QUOTED = r'[^"]+'  # a word or text inside the caption's quotes
# The text task's captions (captions.text_caption): a word caption, then its ink and its font.
_INK = _alt(kn.WORD_COLORS)
_INK_SAID = "|".join(re.escape(form).replace(r"\{\}", f"(?:{_INK})") for form in cap.INK_FORMS)
_WORD_LOOK = rf"(?:{_INK_SAID})?(?: (?:{_alt(phrase for _, phrase in FONT_WORDS.values())}))?"
_WORD = [re.compile(p.pattern + _WORD_LOOK) for p in _templates(cap.WORD_PHRASINGS, text=_QUOTED)]
_CHART = [
    re.compile(rf"a bar chart with values {V}(?:, {V})*"),
    re.compile(rf"a bar chart of {V}(?:, {V})* and {V}"),
    re.compile(rf"a chart with (?P<n>{NUM}) bars of heights (?P<v>{V}(?:, {V})*)"),
    re.compile(rf"a bar chart: (?:{BAR_COLOR}) {V}(?:, (?:{BAR_COLOR}) {V})*"),
]
_REF = rf"the (?:{COLOR}) (?:{SHAPE})(?: (?:{CP}))?"
# What each field of the edit and inpaint templates stands for in a training caption.
_EDIT_FIELDS = {
    "recolor": {"ref": _REF, "color": f"(?:{COLOR})"},
    "background": {"color": f"(?:{BG})"},
    "add": {"what": _OBJ, "where": f"(?:{CP})"},
    "remove": {"ref": _REF},
    "move": {"ref": _REF, "cell": f"(?:{CELL})", "where": f"(?:{CP})"},
    "word_edit": {"old": _QUOTED, "new": _QUOTED},
}
_EDIT_RE = {family: _templates(cap.EDIT_PHRASINGS[family], **f) for family, f in _EDIT_FIELDS.items()}
_INPAINT = _templates(cap.INPAINT_PHRASINGS, what=_OBJ)
_COMPOSE_ITEM = re.compile(rf"(?P<noun>the .+?) (?P<slot>{SLOT})(?P<sep>, | and |$)")
_COMPOSE_ORDER_ITEM = re.compile(
    rf"the (?P<ord>first|second|third|fourth) image (?P<slot>{SLOT})(?P<sep>, | and |$)"
)
_STORY = re.compile(
    rf"(?:a storyboard of (?P<n1>.+?)|(?P<num>{NUM}) panels of (?P<n2>.+?)|a comic strip with (?P<n3>.+?)): "
    rf"(?P<panels>.+)"
)
_PANEL = re.compile(rf"(?:(?:small|large) )?(?:(?:{PANEL_CP}) )?on (?:a|an) (?:{BG}) background")
_STYLE = _templates(cap.STYLE_PHRASINGS, noun=r"(?P<n>.+)")
_ORDINAL_INDEX = {"first": 0, "second": 1, "third": 2, "fourth": 3}
_LAYOUT_SLOTS = {n: [set(tk.LAYOUTS[l][1]) for l in names] for n, names in tk.LAYOUTS_BY_COUNT.items()}


def canonical_case(prompt: str) -> str:
    """Lower case outside double quotes, single spaces, no outer blanks."""
    parts = " ".join(prompt.split()).split('"')
    return '"'.join(p if i % 2 else p.lower() for i, p in enumerate(parts))


class Recognizer:
    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.plain = {i.name for i in vocab.icons if not i.is_flag}
        self.flags = set(vocab.flags)

    # -- nouns --------------------------------------------------------------------------------
    def noun(self, text: str, definite: bool = False) -> str | None:
        """The icon name of a training noun ('a fox', 'the fox', 'the flag of canada'), or None."""
        if text.startswith("the flag of "):
            name = text[len("the flag of ") :]
            return name if name in self.flags else None
        if definite:
            name = text[4:] if text.startswith("the ") else None
            return name if name in self.plain else None
        art, _, name = text.partition(" ")
        return name if name in self.plain and art == cap.article(name) else None

    # -- families -----------------------------------------------------------------------------
    def icon(self, s: str) -> Recognized | None:
        name = None
        if s in self.plain:
            name = s
        elif s.startswith("an emoji of "):
            name = self.noun(s[len("an emoji of ") :])
        elif s.endswith(" icon") and s[: -len(" icon")] in self.plain:
            name = s[: -len(" icon")]
        elif s.startswith("flag of ") and s[len("flag of ") :] in self.flags:
            name = s[len("flag of ") :]
        elif s.endswith(" flag") and s[: -len(" flag")] in self.flags:
            name = s[: -len(" flag")]
        else:
            name = self.noun(s)
        return Recognized("icon", "t2i", names=(name,)) if name else None

    def shapes(self, s: str) -> Recognized | None:
        head = _SCENE_HEAD.fullmatch(s)
        body = head["body"]
        for whole, part in ((_SCENE_BODY, _SCENE_PART_G), (_TERSE_BODY, _TERSE_PART_G)):
            if not whole.fullmatch(body):
                continue
            total = 0
            for m in part.finditer(body):
                count = _WORD_TO_NUM[m["n"]] if m["n"] else 1
                cells = re.split(r", | and ", m["where"])
                if len(cells) != count:
                    break
                total += count
            else:
                if head["n"] is None or _WORD_TO_NUM[head["n"]] == total:
                    return Recognized("shapes", "t2i")
        return None

    def word(self, s: str) -> Recognized | None:
        return Recognized("word", "t2i") if any(p.fullmatch(s) for p in _WORD) else None

    def chart(self, s: str) -> Recognized | None:
        for p in _CHART:
            m = p.fullmatch(s)
            if m and ("n" not in p.groupindex or _WORD_TO_NUM[m["n"]] == len(m["v"].split(", "))):
                return Recognized("chart", "t2i")
        return None

    def edit(self, s: str) -> Recognized | None:
        for family, patterns in _EDIT_RE.items():
            if any(p.fullmatch(s) for p in patterns):
                return Recognized(family, "edit")
        return None

    def inpaint(self, s: str) -> Recognized | None:
        return Recognized("inpaint", "inpaint") if any(p.fullmatch(s) for p in _INPAINT) else None

    def compose(self, s: str) -> Recognized | None:
        by_order = s.startswith("put ")
        body = s[4:] if by_order else s
        item = _COMPOSE_ORDER_ITEM if by_order else _COMPOSE_ITEM
        pos, slots, names, seps = 0, [], [], []
        while pos < len(body):
            m = item.match(body, pos)
            if m is None:
                return None
            if not by_order:
                name = self.noun(m["noun"], definite=True)
                if name is None:
                    return None
                names.append(name)
            slots.append(m["slot"])
            seps.append(m["sep"])
            pos = m.end()
        n = len(slots)
        # join_and: ", " between items, " and " before the last one
        if n not in _LAYOUT_SLOTS or seps != [", "] * (n - 2) + [" and ", ""]:
            return None
        if set(slots) not in _LAYOUT_SLOTS[n] or len(set(slots)) != n:
            return None
        if by_order:
            order = [_ORDINAL_INDEX[m["ord"]] for m in item.finditer(body)]
            if sorted(order) != list(range(n)):
                return None
            slots = [slots[order.index(r)] for r in range(n)]
        return Recognized("compose", "compose", n_refs=n, names=tuple(names), slots=tuple(slots))

    def storyboard(self, s: str) -> Recognized | None:
        m = _STORY.fullmatch(s)
        if m is None:
            return None
        name = self.noun(m["n1"] or m["n2"] or m["n3"])
        panels = m["panels"].split(", then ")
        if name is None or not all(_PANEL.fullmatch(p) for p in panels):
            return None
        if m["num"] and _WORD_TO_NUM[m["num"]] != len(panels):
            return None
        return Recognized("storyboard", "storyboard", num_outputs=len(panels), names=(name,))

    def style(self, s: str) -> Recognized | None:
        for p in _STYLE:
            m = p.fullmatch(s)
            if m and (name := self.noun(m["n"])):
                return Recognized("style", "style", names=(name,))
        return None

    # -- all ----------------------------------------------------------------------------------
    def recognize(self, prompt: str) -> list[Recognized]:
        """Every training-caption family the prompt belongs to (a prompt can be several: 'a red
        circle' is an icon caption and an inpaint prompt)."""
        s = canonical_case(prompt)
        if not s:
            return []
        found = [
            self.icon(s),
            self.shapes(s),
            self.word(s),
            self.chart(s),
            self.edit(s),
            self.inpaint(s),
            self.compose(s),
            self.storyboard(s),
            self.style(s),
        ]
        return [r for r in found if r is not None]
