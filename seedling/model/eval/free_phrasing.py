"""The free-phrasing icon suite: icon prompts worded as a designer might, never as in training.

The harness's `t2i_icons` suite asks for each icon with a training caption ("a fox"); this one
asks with templates disjoint from every training template (captions.ICON_SHORT_FORMS,
ICON_SENTENCES and the v1 forms) and with any of the icon's names (icon_names.py: the CLDR name,
`emoji` aliases, the Unicode name). tests/test_captions.py holds the suite to that: no prompt
of the suite is a caption the trainer can draw. The judge is `t2i_icons`'s retrieval.
"""

from __future__ import annotations

import numpy as np

from seedling.model.data import captions as cap
from seedling.model.data import tasks as tk

# `{bare}` / `{noun}` as in captions.icon_words.
FREE_TEMPLATES = (
    "could you make {noun} for me",
    "i'd like a picture with {noun} in it",
    "generate {noun}",
    "{noun} as clip art",
    "sketch {noun}",
    "please paint {noun}",
    "a sticker showing {noun}",
    "give me an icon that shows {noun}",
    "an emoji style {bare}",
    "create {noun}",
    "a pictogram of {noun}",
    "can you draw {noun}?",
    "i need {noun} for my slides",
    "{bare} symbol for an app",
    "render {noun}",
    "a small graphic of {noun}",
)


def free_prompt(names: tuple[str, ...], group: str, rng: np.random.Generator) -> tuple[str, str]:
    """(prompt, the name it uses): any of the icon's names, in one of FREE_TEMPLATES."""
    name = names[rng.integers(len(names))]
    template = FREE_TEMPLATES[rng.integers(len(FREE_TEMPLATES))]
    return template.format(**cap.icon_words(name, group)), name


def free_icon_cases(ctx, rng: np.random.Generator, n: int) -> list[tk.Sample]:
    """One t2i case per evaluated icon (the first `n` of `ctx.icons`), prompted freely; meta as
    `TaskSampler.t2i_icon`'s plus "name_used" and "first_name" (whether that is the CLDR name).

    The names come from `ctx.names`, `icon_names` over all icons: a name is unambiguous among
    all icons, as in training, not only among the evaluated ones.
    """
    cases = []
    for icon in ctx.icons[:n]:
        prompt, used = free_prompt(ctx.names[icon.name], icon.group, rng)
        meta = {
            "kind": "icon",
            "name": icon.name,
            "group": icon.group,
            "name_used": used,
            "first_name": used == icon.name,
        }
        cases.append(tk.Sample("t2i", prompt, [], None, [tk.composite(icon.rgba)], meta))
    return cases
