"""The model's vocabulary: what its training captions can say, and captions in the training form.

Everything the expander writes goes through `model.data.captions` (the functions that wrote the
training captions), so an expanded prompt is word for word a caption the model was trained on.
Those functions pick a phrasing with a generator; `FIRST` picks the first (canonical) one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from seedling.model.data import captions as cap
from seedling.model.data import knowledge as kn
from seedling.model.data import tasks as tk


class _FirstChoice:
    """A stand-in for `numpy.random.Generator` that always picks option 0: canonical phrasings."""

    def integers(self, *args, **kwargs) -> int:
        return 0


FIRST = _FirstChoice()

# Every phrase the captions use for a grid cell, and the cell it names.
CELL_PHRASES: dict[str, str] = {cap.cell_phrase(c, k): c for c in kn.CELLS for k in range(3)}
# Compose slot phrases (all layouts) and storyboard panel positions (k = 0 phrases).
SLOT_PHRASES: tuple[str, ...] = tuple(dict.fromkeys(p for _, phrases in tk.LAYOUTS.values() for p in phrases))


@dataclass(frozen=True)
class IconEntry:
    name: str  # e.g. "fox", "canada"
    group: str  # e.g. "flag"

    @property
    def is_flag(self) -> bool:
        return self.group == "flag" and not self.name.startswith("flag")

    def noun(self, definite: bool = False) -> str:
        """'a fox' / 'the fox' / 'the flag of canada' (as the training captions say it)."""
        return cap.icon_noun(self.name, self.group, definite)


@dataclass
class Vocabulary:
    """Icon names (from `load_icons()`) plus the procedural knowledge vocabulary."""

    icons: list[IconEntry]
    aliases: dict[str, str] = field(default_factory=dict)  # extra name -> icon name (emoji aliases)

    @classmethod
    def load(cls, cache_dir=None) -> Vocabulary:
        from seedling.model.data.icons import load_icons

        icons = [IconEntry(i.name, i.group) for i in load_icons(cache_dir)]
        return cls(icons, emoji_aliases({i.name for i in icons}))

    @cached_property
    def by_name(self) -> dict[str, IconEntry]:
        return {i.name: i for i in self.icons}

    @cached_property
    def flags(self) -> dict[str, IconEntry]:
        return {i.name: i for i in self.icons if i.is_flag}

    def icon(self, name: str) -> IconEntry:
        return self.by_name[name]


def emoji_aliases(names: set[str]) -> dict[str, str]:
    """Alias -> icon name from the `emoji` package (":cat:" for "cat face", ":wave:" for "waving
    hand"). Aliases that are another icon's name, hold digits, or are shared are dropped."""
    try:
        import emoji
    except ImportError:  # the names alone still work
        return {}
    from seedling.model.data.icons import _clean_name

    seen: dict[str, set[str]] = {}
    for data in emoji.EMOJI_DATA.values():
        name = _clean_name(data.get("en", ""))
        if name not in names:
            continue
        for raw in data.get("alias", ()):
            alias = _clean_name(raw)
            if alias and alias not in names and not any(ch.isdigit() for ch in alias) and alias != name:
                seen.setdefault(alias, set()).add(name)
    return {a: next(iter(ns)) for a, ns in seen.items() if len(ns) == 1}


# --------------------------------------------------------------------------------------------
# Canonical captions (the first phrasing of each training caption function)
# --------------------------------------------------------------------------------------------


def scene_caption(objects: list[tuple[str, str, str]]) -> str:
    """(colour, shape, cell) objects -> 'a red circle at the top left and two blue squares ...'.

    Objects are ordered by cell as the training scenes are (`random_scene` sorts its cells), so
    the caption groups them as the training captions do.
    """
    ordered = sorted(objects, key=lambda o: kn.CELLS.index(o[2]))
    scene = kn.ShapeScene(tuple(kn.ShapeObject(color=c, shape=s, cell=cell) for c, s, cell in ordered))
    return cap.scene_caption(scene, FIRST, phrasing=0)


def word_caption(text: str) -> str:
    return cap.word_caption(text, FIRST, phrasing=0)


def text_caption(text: str, color: str = "black", font: str = "default") -> str:
    """The text task's caption (captions.text_caption) in its first phrasing, the ink said only
    when it is not black: 'the word "SALE" in red in bold letters'."""
    return word_caption(text) + cap.look_words(None if color == "black" else color, font)


def chart_caption(values: list[int], colors: list[str] | None = None) -> str:
    """'a bar chart with values 3, 5, 2'; with a colour per bar 'a bar chart: red 3, blue 5'."""
    spec = kn.ChartSpec(tuple(values), tuple(colors or ["blue"] * len(values)))
    return cap.chart_caption(spec, FIRST, phrasing=3 if colors else 0)


def object_phrase(color: str, shape: str) -> str:
    return cap.with_article(f"{color} {shape}")


def object_ref(color: str | None, shape: str, cell: str | None = None) -> str:
    """'the red circle' (+ ' at the top left' when the user said where it is)."""
    name = f"the {color} {shape}" if color else f"the {shape}"
    return f"{name} {cap.cell_phrase(cell)}" if cell else name


def recolor_instruction(ref: str, color: str) -> str:
    return cap.recolor_instruction(ref, color, FIRST)


def background_instruction(color: str) -> str:
    return cap.background_instruction(color, FIRST)


def add_instruction(color: str, shape: str, cell: str) -> str:
    return cap.add_instruction(kn.ShapeObject(color, shape, cell), FIRST)


def remove_instruction(ref: str) -> str:
    return cap.remove_instruction(ref, FIRST)


def move_instruction(ref: str, cell: str) -> str:
    return cap.move_instruction(ref, cell, FIRST)


def word_change_instruction(old: str | None, new: str) -> str:
    """'change the word to "new"'; 'replace "old" with "new"' when the old word is named too."""
    if old:
        return f'replace "{old}" with "{new}"'  # the training's second phrasing names both words
    return cap.word_change_instruction("", new, FIRST)


def inpaint_prompt(color: str, shape: str) -> str:
    return cap.inpaint_prompt(kn.ShapeObject(color, shape, "center"), FIRST)


def compose_prompt(nouns: list[str], slot_phrases: list[str], assignment: list[int]) -> str:
    return cap.compose_prompt(nouns, slot_phrases, assignment, FIRST, phrasing=0)


def compose_by_order_prompt(slot_phrases: list[str], assignment: list[int]) -> str:
    return cap.compose_prompt([""] * len(assignment), slot_phrases, assignment, FIRST, phrasing=1)


def storyboard_prompt(noun: str, panels: list[dict]) -> str:
    return cap.storyboard_prompt(noun, [tk.panel_phrase(p) for p in panels], FIRST, phrasing=0)


def style_prompt(noun: str) -> str:
    return cap.style_prompt(noun, FIRST, phrasing=0)
