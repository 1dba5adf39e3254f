"""Where references go: a compose expansion's boxes matched to the reference images, and the
panel scenes of a storyboard drawn panel by panel from one picture of its character.

An expansion's boxes follow the prompt's subjects in the order the prompt names them ("the fox on
the right and the cat on the left": box 0 for the fox, box 1 for the cat). By-order prompts ("put
the first image on the left ...") and arranged ones ("side by side") already give each reference
its box. A named prompt does not say which picture is the fox, and a designer does not upload
the references in the order of the sentence. So each named subject is matched to the reference
that looks most like its icon: small colour thumbnails of the icon (its 128 px render on white)
and of every reference, and the assignment of subjects to references with the least total
difference, over every permutation (2-4 references: at most 24).

The match is used only when it is clearly better than the prompt's order (`MARGIN`): references
that look like none of the icons (a photo, a drawing of something else) keep the prompt's order,
and a note says so.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image

from seedling.model.data import captions as cap
from seedling.model.data import knowledge as kn
from seedling.model.data import tasks as tk
from seedling.model.prompt_expansion.result import ExpansionResult

THUMB = 16  # px: enough to tell icons apart by colour and rough shape, blind to resampling detail
MARGIN = 0.8  # the matched assignment's total difference must be under this fraction of the order's


@dataclass
class Placement:
    boxes: list[tuple[float, float, float, float]] | None  # one per reference, in reference order
    matched: bool = False  # True: the references were reordered by looking at them
    notes: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def _icons_by_name() -> dict[str, np.ndarray]:
    from seedling.model.data.icons import load_icons

    return {i.name: i.rgba for i in load_icons()}


def icon_image(name: str) -> np.ndarray | None:
    """The OpenMoji icon `name` as 128 px RGBA (the icon cache the vocabulary comes from), or None."""
    return _icons_by_name().get(name)


def thumbnail(image) -> np.ndarray:
    """(THUMB, THUMB, 3) floats in [0, 1]: the picture on white, shrunk with area averaging."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB").resize((THUMB, THUMB), Image.BOX)
    return np.asarray(im, dtype=np.float32) / 255.0


def best_assignment(cost: np.ndarray) -> tuple[int, ...]:
    """perm with perm[subject] = reference minimising sum(cost[s, perm[s]]) (square cost, n <= 4)."""
    n = cost.shape[0]
    return min(itertools.permutations(range(n)), key=lambda p: sum(cost[s, p[s]] for s in range(n)))


def place_references(
    result: ExpansionResult, images: Sequence, icon_image: Callable[[str], np.ndarray | None]
) -> Placement:
    """The boxes of `result` (a compose expansion) in the order of `images`.

    `icon_image(name)` gives an icon's picture (RGBA or RGB array), None when there is none."""
    boxes = result.boxes
    if boxes is None:
        return Placement(None, notes=["The prompt does not say where the references go: they are placed freely."])
    boxes = list(boxes)
    n = len(images)
    if len(boxes) != n:
        why = f"The prompt places {len(boxes)} subject(s) for {n} reference image(s): they are placed freely."
        return Placement(None, notes=[why])
    names = [m.value for m in result.matches if m.kind == "icon"]
    if len(names) != n:  # by order, side by side, or not every subject an icon: the boxes stand as they are
        return Placement(boxes)
    icons = [icon_image(name) for name in names]
    if any(i is None for i in icons):
        return Placement(boxes)
    refs = [thumbnail(im) for im in images]
    cost = np.array([[float(np.abs(thumbnail(icon) - ref).mean()) for ref in refs] for icon in icons])
    perm = best_assignment(cost)
    matched = sum(cost[s, perm[s]] for s in range(n))
    in_order = sum(cost[s, s] for s in range(n))
    if perm == tuple(range(n)):
        return Placement(boxes, matched=True)
    if matched >= MARGIN * in_order:
        why = ("The references do not clearly look like the icons the prompt names: "
               "they are placed in the order the prompt names them.")
        return Placement(boxes, notes=[why])
    out = [boxes[0]] * n
    for s, r in enumerate(perm):
        out[r] = boxes[s]
    said = ", ".join(f"{names[s]}: reference {perm[s] + 1}" for s in range(n))
    return Placement(out, matched=True, notes=[f"Matched by look ({said})."])


# --------------------------------------------------------------------------------------------
# Storyboards drawn panel by panel
# --------------------------------------------------------------------------------------------

_CELLS = {phrase: cell for cell, phrases in cap._CELL_PHRASES.items() for phrase in phrases}
_PANEL = re.compile(
    rf"(?:(?P<size>small|large) )?(?:(?P<cell>{'|'.join(sorted(map(re.escape, _CELLS), key=len, reverse=True))}) )?"
    rf"on (?:a|an) (?P<bg>{'|'.join(sorted(map(re.escape, kn.BACKGROUNDS), key=len, reverse=True))}) background"
)
_HEAD = re.compile(r"(?:a storyboard of (?P<n1>.+?)|(?:\w+) panels of (?P<n2>.+?)|a comic strip with (?P<n3>.+?)): (?P<panels>.+)")


@dataclass
class PanelPlan:
    noun: str  # the character as the caption says it ("a fox")
    panels: list[dict]  # scenes: background, position, size, angle (as TaskSampler.storyboard draws them)

    def prompts(self) -> list[str]:
        """Each panel's composition caption, on white as the panels were trained
        (TaskSampler.storyboard_panel); the background comes after, as an edit (`edits`)."""
        return [cap.storyboard_panel_prompt(self.noun, tk.panel_phrase({**p, "background": "white"}))
                for p in self.panels]

    def edits(self) -> list[str | None]:
        """Each panel's background edit, in the edit task's training words; None on white."""
        from seedling.model.prompt_expansion.vocab import background_instruction

        return [None if p["background"] == "white" else background_instruction(p["background"]) for p in self.panels]

    def boxes(self) -> list[tuple[float, float, float, float]]:
        """Where the character goes in each panel, as fractions of the panel."""
        return [tuple(v / tk.SIZE for v in tk.panel_box(p)) for p in self.panels]


def panel_plan(caption: str) -> PanelPlan | None:
    """The character and panel scenes of a storyboard caption in the training form ('a storyboard
    of a fox: small on a blue background, then on the left on a green background'), as the
    grounded expander writes every storyboard it understands; None for any other text."""
    m = _HEAD.fullmatch(" ".join(caption.split()))
    if m is None:
        return None
    panels = []
    for text in m["panels"].split(", then "):
        p = _PANEL.fullmatch(text)
        if p is None:
            return None
        size = p["size"] or "medium"
        position = _CELLS.get(p["cell"], "center") if p["cell"] else "center"
        if size == "large":
            position = "center"  # large panels are centred (as in training)
        panels.append({"background": p["bg"], "position": position, "size": size, "angle": 0.0})
    return PanelPlan(m["n1"] or m["n2"] or m["n3"], panels)
