"""Prompt and instruction phrasings for the generated data.

Every caption function takes the `numpy.random.Generator` that picks among its phrasings, so
captions are as deterministic as the images. Several phrasings per fact teach the model the
fact rather than one sentence; the evaluation harness passes `phrasing=0` where it wants one
canonical prompt.
"""

from __future__ import annotations

import numpy as np

from seedling.model.data.glyphs import FONT_WORDS
from seedling.model.data.knowledge import ChartSpec, ShapeObject, ShapeScene

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")

# Prepositional phrases for the grid cells, in the order `cell_phrase(cell, k)` picks them.
_CELL_PHRASES = {
    "top left": ("at the top left", "in the top left corner", "in the upper left"),
    "top": ("at the top", "at the top center", "in the top middle"),
    "top right": ("at the top right", "in the top right corner", "in the upper right"),
    "left": ("on the left", "at the left", "in the middle left"),
    "center": ("in the center", "in the middle", "at the center"),
    "right": ("on the right", "at the right", "in the middle right"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the lower left"),
    "bottom": ("at the bottom", "at the bottom center", "in the bottom middle"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the lower right"),
}


# Phrasings as templates: the caption functions below fill in the {fields}, and the recogniser
# (prompt_expansion/recognize.py) compiles the same templates into the patterns it matches.
WORD_PHRASINGS = (
    'the word "{text}"',
    'text that says "{text}"',
    '"{text}" written in large letters',
    'the text "{text}"',
)
EDIT_PHRASINGS = {  # by edit family, as recognize.FAMILY_TASK names them
    "recolor": (
        "make {ref} {color}",
        "change {ref} to {color}",
        "recolor {ref} {color}",
        "paint {ref} {color}",
    ),
    "background": (
        "make the background {color}",
        "change the background to {color}",
        "use a {color} background",
        "set the background color to {color}",
    ),
    "add": ("add {what} {where}", "put {what} {where}", "draw {what} {where}"),
    "remove": ("remove {ref}", "delete {ref}", "take away {ref}", "erase {ref}"),
    "move": ("move {ref} to the {cell}", "put {ref} {where} instead", "shift {ref} to the {cell}"),
    "word_edit": (
        'change the word to "{new}"',
        'replace "{old}" with "{new}"',
        'make the text say "{new}"',
        'change the text to "{new}"',
    ),
}
INPAINT_PHRASINGS = ("{what}", "{what} here", "fill the masked area with {what}")
STYLE_PHRASINGS = (
    "{noun} in the same style",
    "the same style, but {noun}",
    "draw {noun} like this",
    "{noun}, styled like the reference",
)


def pick(rng: np.random.Generator, options, phrasing: int | None = None):
    """One of `options`: the `phrasing`-th if given (the eval's canonical prompt), else random."""
    if phrasing is not None:
        return options[phrasing % len(options)]
    return options[rng.integers(len(options))]


def phrase(
    templates: tuple[str, ...], rng: np.random.Generator, phrasing: int | None = None, **fields
) -> str:
    """One of the templates (`pick`), its {fields} filled in."""
    return pick(rng, templates, phrasing).format(**fields)


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def with_article(noun: str) -> str:
    return f"{article(noun)} {noun}"


def plural(noun: str) -> str:
    return noun + "es" if noun.endswith(("s", "x", "ch", "sh")) else noun + "s"


def join_and(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def cell_phrase(cell: str, k: int = 0) -> str:
    return _CELL_PHRASES[cell][k % len(_CELL_PHRASES[cell])]


# --------------------------------------------------------------------------------------------
# Text-to-image captions
# --------------------------------------------------------------------------------------------


def _is_country_flag(name: str, group: str) -> bool:
    # Flag icons are named after their country ("canada"); "flag in hole" names itself.
    return group == "flag" and not name.startswith("flag")


def icon_noun(name: str, group: str, definite: bool = False) -> str:
    """The icon as a noun phrase: 'a fox' / 'the fox'; a country flag is 'the flag of canada'."""
    if _is_country_flag(name, group):
        return f"the flag of {name}"
    return f"the {name}" if definite else with_article(name)


def icon_caption(name: str, group: str, rng: np.random.Generator, phrasing: int | None = None) -> str:
    """'fox', 'a fox', 'an emoji of a fox', 'fox icon'; flags read 'the flag of canada'."""
    if _is_country_flag(name, group):
        options = (
            f"the flag of {name}",
            f"flag of {name}",
            f"{name} flag",
            f"an emoji of the flag of {name}",
        )
    else:
        options = (name, with_article(name), f"an emoji of {with_article(name)}", f"{name} icon")
    return pick(rng, options, phrasing)


# Rich icon captions: the short forms and free sentences a designer types, over every name of
# the icon. `{bare}` is the name as a bare noun ("fox", "canada flag"), `{noun}` the noun with
# its article ("a fox", "the flag of canada"). The evaluation's free-phrasing suite
# (model/eval/free_phrasing.py) uses other templates, so it measures phrasings never trained on.
ICON_SHORT_FORMS = (
    "{bare}",
    "{noun}",
    "the {bare}",
    "{bare} icon",
    "{bare} emoji",
    "an emoji of {noun}",
)
ICON_SENTENCES = (
    "a little {bare}",
    "a cute {bare}",
    "a simple {bare}",
    "a cartoon {bare}",
    "a colorful {bare}",
    "draw {noun}",
    "draw me {noun}",
    "show me {noun}",
    "make {noun}",
    "i want {noun}",
    "{noun}, please",
    "a picture of {noun}",
    "a drawing of {noun}",
    "an illustration of {noun}",
    "an image of {noun}",
    "{noun} on a white background",
    "{noun} in the center",
    "a flat icon of {noun}",
)


def icon_words(name: str, group: str) -> dict[str, str]:
    """The template fields for one name: {'bare': 'fox', 'noun': 'a fox'}."""
    if _is_country_flag(name, group):
        return {"bare": f"{name} flag", "noun": f"the flag of {name}"}
    return {"bare": name, "noun": with_article(name)}


def pick_name(names: tuple[str, ...], rng: np.random.Generator, phrasing: int | None = None) -> str:
    """The icon's first name half of the time, another of its names otherwise; the first name
    when `phrasing` is given (the evaluation's canonical prompt)."""
    if phrasing is not None or len(names) == 1 or rng.random() < 0.5:
        return names[0]
    return names[1 + rng.integers(len(names) - 1)]


def rich_icon_caption(
    names: tuple[str, ...], group: str, rng: np.random.Generator, phrasing: int | None = None
) -> str:
    """A short form or a free sentence over one of the icon's names (`names[0]` first).

    With `phrasing` this is `icon_caption(names[0], ...)`, so the evaluation's canonical
    prompts are the same whichever captions a sampler trains on.
    """
    if phrasing is not None:
        return icon_caption(names[0], group, rng, phrasing)
    name = pick_name(names, rng)
    templates = ICON_SHORT_FORMS if rng.random() < 0.5 else ICON_SENTENCES
    return phrase(templates, rng, **icon_words(name, group))


def rich_icon_caption_space(names: tuple[str, ...], group: str) -> set[str]:
    """Every caption `rich_icon_caption` (with or without `phrasing`) can return for the icon."""
    out = {icon_caption(names[0], group, None, k) for k in range(4)}
    for name in names:
        fields = icon_words(name, group)
        out |= {t.format(**fields) for t in ICON_SHORT_FORMS + ICON_SENTENCES}
    return out


def _group_scene(scene: ShapeScene) -> list[tuple[str, str, list[str]]]:
    """Objects grouped by (colour, shape) in order of first appearance: (color, shape, cells)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for o in scene.objects:
        groups.setdefault((o.color, o.shape), []).append(o.cell)
    return [(c, s, cells) for (c, s), cells in groups.items()]


def scene_caption(scene: ShapeScene, rng: np.random.Generator, phrasing: int | None = None) -> str:
    """E.g. 'a blue square in the center and two red circles at the top left and on the right'."""
    form = pick(rng, range(4), phrasing)
    k = 0 if phrasing is not None else int(rng.integers(3))  # which cell phrase variant
    parts = []
    for color, shape, cells in _group_scene(scene):
        if form == 2:  # terse: "red circle top left"
            one, where = f"{color} {shape}", join_and(list(cells))
        else:
            one, where = with_article(f"{color} {shape}"), join_and([cell_phrase(c, k) for c in cells])
        noun = one if len(cells) == 1 else f"{NUMBER_WORDS[len(cells)]} {color} {plural(shape)}"
        parts.append(f"{noun} {where}")
    body = join_and(parts) if form != 2 else ", ".join(parts)
    n = len(scene.objects)
    if form == 1:
        return f"a white image with {body}"
    if form == 3:
        return f"{NUMBER_WORDS[n]} shape{'s' if n > 1 else ''}: {body}"
    return body


def word_caption(text: str, rng: np.random.Generator, phrasing: int | None = None) -> str:
    return phrase(WORD_PHRASINGS, rng, phrasing, text=text)


INK_FORMS = (" in {}", " in {} letters", ", {} ink")  # how a text caption says its ink


def look_words(color: str | None, font: str, ink_form: int = 0) -> str:
    """A text caption's tail: the ink in INK_FORMS[ink_form] (None: not said), then the font's
    words (none for the plain font): ' in red in bold letters'."""
    out = INK_FORMS[ink_form].format(color) if color else ""
    return out + (" " + FONT_WORDS[font][1] if font in FONT_WORDS else "")


def text_caption(text: str, color: str, font: str, rng: np.random.Generator, phrasing: int | None = None) -> str:
    """The text task's prompt: the word's caption plus its look, said whenever it is not the plain
    default (colour unless black, font unless the plain one), so that a prompt fixes the ink and
    the letter style and the model has one answer to learn."""
    out = word_caption(text, rng, phrasing)
    said = color != "black" or rng.random() < 0.3
    return out + look_words(color if said else None, font, int(rng.integers(len(INK_FORMS))) if said else 0)


def chart_caption(spec: ChartSpec, rng: np.random.Generator, phrasing: int | None = None) -> str:
    values = [str(v) for v in spec.values]
    form = pick(rng, range(4), phrasing)
    if form == 0:
        return f"a bar chart with values {', '.join(values)}"
    if form == 1:
        return f"a bar chart of {join_and(values)}"
    if form == 2:
        return f"a chart with {NUMBER_WORDS[len(values)]} bars of heights {', '.join(values)}"
    bars = [f"{c} {v}" for c, v in zip(spec.colors, values)]
    return f"a bar chart: {', '.join(bars)}"


# --------------------------------------------------------------------------------------------
# Edit instructions
# --------------------------------------------------------------------------------------------


def object_ref(obj: ShapeObject, scene: ShapeScene) -> str:
    """'the red circle', or 'the red circle at the top left' when the scene has several."""
    same = [o for o in scene.objects if (o.color, o.shape) == (obj.color, obj.shape)]
    name = f"the {obj.color} {obj.shape}"
    return name if len(same) <= 1 else f"{name} {cell_phrase(obj.cell)}"


def recolor_instruction(ref: str, new_color: str, rng: np.random.Generator) -> str:
    return phrase(EDIT_PHRASINGS["recolor"], rng, ref=ref, color=new_color)


def background_instruction(color: str, rng: np.random.Generator) -> str:
    return phrase(EDIT_PHRASINGS["background"], rng, color=color)


def add_instruction(obj: ShapeObject, rng: np.random.Generator) -> str:
    what = with_article(f"{obj.color} {obj.shape}")
    where = cell_phrase(obj.cell, int(rng.integers(3)))
    return phrase(EDIT_PHRASINGS["add"], rng, what=what, where=where)


def remove_instruction(ref: str, rng: np.random.Generator) -> str:
    return phrase(EDIT_PHRASINGS["remove"], rng, ref=ref)


def move_instruction(ref: str, new_cell: str, rng: np.random.Generator) -> str:
    return phrase(EDIT_PHRASINGS["move"], rng, ref=ref, cell=new_cell, where=cell_phrase(new_cell))


def word_change_instruction(old: str, new: str, rng: np.random.Generator) -> str:
    return phrase(EDIT_PHRASINGS["word_edit"], rng, old=old, new=new)


def inpaint_prompt(obj: ShapeObject, rng: np.random.Generator) -> str:
    return phrase(INPAINT_PHRASINGS, rng, what=with_article(f"{obj.color} {obj.shape}"))


# --------------------------------------------------------------------------------------------
# Compose, storyboard, style
# --------------------------------------------------------------------------------------------


def compose_prompt(
    nouns: list[str],
    slot_phrases: list[str],
    assignment: list[int],
    rng: np.random.Generator,
    phrasing: int | None = None,
) -> str:
    """Layout prompt. `nouns` are definite ('the fox'); `assignment[s]` is the reference in slot s.

    Either by name ('the fox on the left and the cat on the right') or by reference order
    ('put the first image on the left, the second image on the right').
    """
    form = pick(rng, range(2), phrasing)
    if form == 0:
        return join_and([f"{nouns[r]} {slot_phrases[s]}" for s, r in enumerate(assignment)])
    by_ref = sorted(range(len(assignment)), key=lambda s: assignment[s])
    parts = [f"the {ORDINALS[assignment[s]]} image {slot_phrases[s]}" for s in by_ref]
    return "put " + join_and(parts)


def storyboard_prompt(
    noun: str, panel_phrases: list[str], rng: np.random.Generator, phrasing: int | None = None
) -> str:
    """'a storyboard of a fox: on a blue background, then on the left on a green background, ...'.

    `noun` is the character with its article ('a fox').
    """
    n = NUMBER_WORDS[len(panel_phrases)]
    head = pick(
        rng, (f"a storyboard of {noun}", f"{n} panels of {noun}", f"a comic strip with {noun}"), phrasing
    )
    return f"{head}: " + ", then ".join(panel_phrases)


def storyboard_panel_prompt(noun: str, panel_phrase: str) -> str:
    """One panel drawn from a picture of the character: 'a storyboard of a fox: small on a blue background'."""
    return f"a storyboard of {noun}: {panel_phrase}"


def style_prompt(noun: str, rng: np.random.Generator, phrasing: int | None = None) -> str:
    """`noun` is the content with its article ('a cat')."""
    return phrase(STYLE_PHRASINGS, rng, phrasing, noun=noun)
