"""Task tuples for the unified model: every image source yields data for every task.

A `Sample` is what one training example (or one evaluation case) needs: the task name, the
prompt, the reference images, an optional inpainting mask, the target output image(s) and a
`meta` dict with the structured facts the evaluation judges check (specs, edited regions,
compose slots, storyboard panels).

Edits and inpaints render source and target from the same spec with one thing changed, so every
pixel outside the edited region is identical; `meta["region"]` is that region as a (size, size)
bool mask (PSNR outside it is the preservation metric).

Samples are 128 px unless `TaskSampler(size=...)` asks for a multiple of it (256, 512, 1024):
the same draws of the random stream (the same prompts, scenes and places) rendered natively at
that size, icons from the vector font and shapes, words and charts drawn on the larger canvas;
boxes in `meta` are in that size's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from seedling.model.data import captions as cap
from seedling.model.data import controls as ctl
from seedling.model.data import knowledge as kn
from seedling.model.data.glyphs import word_glyph
from seedling.model.data.icon_names import icon_names
from seedling.model.data.icons import Icon
from seedling.model.data.styles import STYLES, composite
from seedling.model.task_table import TASK_NAMES, UPSCALE_FACTORS

TASKS = TASK_NAMES  # one sampler method per task, named after it
# "rich": every name of an icon in short forms and free sentences (captions.rich_icon_caption);
# "v1": the four phrasings of the first name the shipped model (assets/default) was trained on.
CAPTION_STYLES = ("rich", "v1")
T2I_KINDS = ("icon", "shapes", "word", "chart")
EDIT_KINDS = ("recolor", "background", "add", "remove", "move", "word")
SIZE = kn.SIZE


@dataclass
class Sample:
    task: str  # one of TASKS
    prompt: str
    refs: list[np.ndarray]  # reference images, each (size, size, 3) uint8
    mask: np.ndarray | None  # (size, size) uint8, 255 = region to change; only for "inpaint"
    outputs: list[np.ndarray]  # target images, each (size, size, 3) uint8
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Icon rendering helpers
# --------------------------------------------------------------------------------------------


def scaled_rgba(icon: Icon, size: int, angle: float = 0.0, native: bool = False) -> np.ndarray:
    """The icon at (size, size) and rotated by `angle` degrees, transparent outside: the 128 px
    picture resized, or with `native` rasterised at `size` from the vector font."""
    im = Image.fromarray(icon.rgba_at(size) if native else icon.rgba, "RGBA")
    if size != im.width:
        im = im.resize((size, size), Image.LANCZOS)
    if angle:
        im = im.rotate(angle, resample=Image.BICUBIC)
    return np.asarray(im)


def paste(canvas: np.ndarray, rgba: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-composite `rgba` onto `canvas` in place with its top-left corner at (x0, y0)."""
    h, w = rgba.shape[:2]
    region = canvas[y0 : y0 + h, x0 : x0 + w]
    a = rgba[..., 3:4].astype(np.uint16)
    region[:] = ((rgba[..., :3] * a + region * (255 - a) + 127) // 255).astype(np.uint8)


def canvas(color=kn.WHITE, size: int = SIZE) -> np.ndarray:
    out = np.empty((size, size, 3), np.uint8)
    out[:] = color
    return out


# Compose layouts: slot boxes (x0, y0, x1, y1), exclusive, square, and how prompts name them.
LAYOUTS = {
    "halves": ([(0, 32, 64, 96), (64, 32, 128, 96)], ["on the left", "on the right"]),
    "thirds": (
        [(0, 43, 42, 85), (43, 43, 85, 85), (86, 43, 128, 85)],
        ["on the left", "in the middle", "on the right"],
    ),
    "two_over_one": (
        [(0, 0, 64, 64), (64, 0, 128, 64), (32, 64, 96, 128)],
        ["at the top left", "at the top right", "at the bottom"],
    ),
    "quadrants": (
        [(0, 0, 64, 64), (64, 0, 128, 64), (0, 64, 64, 128), (64, 64, 128, 128)],
        ["at the top left", "at the top right", "at the bottom left", "at the bottom right"],
    ),
}
LAYOUTS_BY_COUNT = {2: ("halves",), 3: ("thirds", "two_over_one"), 4: ("quadrants",)}
# references placed without naming them: "side by side" / "in a row" (row) or "in a grid", by count
ARRANGED_LAYOUTS = {"row": {2: "halves", 3: "thirds"}, "grid": {3: "two_over_one", 4: "quadrants"}}

# Storyboard panel scenes: icon sizes in px and positions (phrase, where the icon centre goes).
PANEL_SIZES = {"small": 56, "medium": 76, "large": 100}
PANEL_POSITIONS = (
    "center",
    "left",
    "right",
    "top",
    "bottom",
    "top left",
    "top right",
    "bottom left",
    "bottom right",
)
MAX_PANELS = 6
# Tasks whose samples come in several batch layouts (#refs, #outputs, slots): their draws are
# planned apart from the rendering, so a batch can pick its layout before it renders (layout_of).
PLANNED_TASKS = ("compose", "storyboard")


def icon_sizes(size: int) -> list[int]:
    """The sides in px at which a `size` px sampler rasterises icons from the font: the whole
    frame, the compose boxes and the storyboard characters (before their tilt). At 128 px none:
    the icon cache is drawn at 128 and resized."""
    if size == SIZE:
        return []
    k = size // SIZE
    boxes = {(x1 - x0) * k for boxes, _ in LAYOUTS.values() for x0, _, x1, _ in boxes}
    return sorted(({size} | boxes | {side * k for side in PANEL_SIZES.values()}) - {SIZE})  # 128: the cache


def panel_origin(position: str, size: int, margin: int = 4, panel: int = SIZE) -> tuple[int, int]:
    """Top-left corner of a `size` px icon placed at `position` inside a `panel` px panel."""
    lo, mid, hi = margin, (panel - size) // 2, panel - margin - size
    col = lo if "left" in position else hi if "right" in position else mid
    row = lo if "top" in position else hi if "bottom" in position else mid
    return col, row


def render_panel(icon: Icon, panel: dict, size: int = SIZE) -> np.ndarray:
    """One `size` px storyboard panel from its scene dict (background, position, size, angle)."""
    out = canvas(kn.BACKGROUNDS[panel["background"]], size)
    x0, y0, x1, _ = panel_box(panel, size)
    paste(out, scaled_rgba(icon, x1 - x0, panel["angle"], native=size != SIZE), x0, y0)
    return out


def panel_box(panel: dict, size: int = SIZE) -> tuple[int, int, int, int]:
    """The (x0, y0, x1, y1) px square a panel's character occupies (before its tilt) in a
    `size` px panel (the 128 px geometry scaled)."""
    k = size // SIZE
    side = PANEL_SIZES[panel["size"]] * k
    x0, y0 = panel_origin(panel["position"], side, 4 * k, size)
    return x0, y0, x0 + side, y0 + side


def panel_phrase(panel: dict) -> str:
    words = []
    if panel["size"] != "medium":
        words.append(panel["size"])
    if panel["position"] != "center":
        words.append(cap.cell_phrase(panel["position"]))
    words.append(f"on {cap.with_article(panel['background'])} background")
    return " ".join(words)


# --------------------------------------------------------------------------------------------
# The sampler
# --------------------------------------------------------------------------------------------


def check_sample_size(size: int) -> None:
    """ValueError unless samples can be drawn at `size` px: 128 or a multiple of it."""
    if size < SIZE or size % SIZE:
        raise ValueError(f"samples are drawn at {SIZE} px or a multiple of it (256, 512, 1024), not {size}")


class TaskSampler:
    """Draws `Sample`s for every task from the icons and the procedural knowledge images.

    `sample(task, rng)` is the training entry point; the per-kind methods (`t2i_icon`,
    `edit(kind=...)`, ...) let the evaluation ask for exactly the cases it judges. With no `rng`
    the sampler's own generator (seeded by `seed`) is used, so `TaskSampler(icons, 0)` replays
    the same stream every time. `captions="v1"` replays the shipped model's training data.
    """

    def __init__(
        self,
        icons: list[Icon],
        seed: int = 0,
        t2i_mix: dict[str, float] | None = None,
        max_panels: int = 4,
        captions: str = "rich",
        storyboard_panels: bool = False,
        size: int = SIZE,
    ):
        check_sample_size(size)
        if len(icons) < 4:
            raise ValueError("TaskSampler needs at least 4 icons (compose uses up to 4 distinct ones)")
        if not 2 <= max_panels <= MAX_PANELS:
            raise ValueError(f"max_panels must be in 2..{MAX_PANELS}, got {max_panels}")
        if captions not in CAPTION_STYLES:
            raise ValueError(f"unknown captions {captions!r}; known: {CAPTION_STYLES}")
        self.icons = list(icons)
        self.captions = captions
        # v1 names an icon by its first name only (and draws no random number for it).
        self.names = icon_names(self.icons) if captions == "rich" else {i.name: (i.name,) for i in icons}
        self.rng = np.random.default_rng(seed)
        mix = t2i_mix or {"icon": 0.5, "shapes": 0.25, "word": 0.15, "chart": 0.1}
        unknown = set(mix) - set(T2I_KINDS)
        if unknown:
            raise ValueError(f"unknown t2i kinds {sorted(unknown)}; known: {T2I_KINDS}")
        self._t2i_kinds = tuple(mix)
        p = np.array([mix[k] for k in self._t2i_kinds], float)
        self._t2i_p = p / p.sum()
        self.max_panels = max_panels
        # half of the "compose" draws are storyboard panels: one reference on a scene (storyboard_panel)
        self.storyboard_panels = storyboard_panels
        self.size = size

    # -- dispatch -----------------------------------------------------------------------------

    def sample(self, task: str, rng: np.random.Generator | None = None, layout: dict | None = None) -> Sample:
        """`layout`: one of `layout_of` (compose and storyboards only): the sample keeps it."""
        rng = rng if rng is not None else self.rng
        if task in PLANNED_TASKS:  # drawn first, rendered after: see layout_of
            return self._render(self._plan(task, rng, layout))
        if layout is not None:
            raise ValueError(f"{task} samples all have one layout; a layout is for {PLANNED_TASKS}")
        make = self._maker("", task, TASKS, "task")  # one method per task, named after it
        return make(rng)

    def _maker(self, prefix: str, kind: str, kinds: tuple[str, ...], what: str):
        """The method `prefix + kind` that draws one sample of `kind`; ValueError for a kind not in `kinds`."""
        if kind not in kinds:
            raise ValueError(f"unknown {what} {kind!r}; known: {kinds}")
        return getattr(self, prefix + kind)

    def _icon(self, rng: np.random.Generator) -> Icon:
        return self.icons[rng.integers(len(self.icons))]

    def _distinct_icons(self, rng: np.random.Generator, n: int) -> list[Icon]:
        return [self.icons[i] for i in rng.choice(len(self.icons), size=n, replace=False)]

    def _noun(
        self, icon: Icon, rng: np.random.Generator, phrasing: int | None, definite: bool = False
    ) -> str:
        name = cap.pick_name(self.names[icon.name], rng, phrasing)
        return cap.icon_noun(name, icon.group, definite)

    # -- text to image ------------------------------------------------------------------------

    def t2i(self, rng: np.random.Generator, kind: str | None = None) -> Sample:
        kind = kind or self._t2i_kinds[rng.choice(len(self._t2i_kinds), p=self._t2i_p)]
        return self._maker("t2i_", kind, T2I_KINDS, "t2i kind")(rng)

    def t2i_icon(
        self, rng: np.random.Generator, icon: Icon | None = None, phrasing: int | None = None
    ) -> Sample:
        icon = icon or self._icon(rng)
        if self.captions == "rich":
            prompt = cap.rich_icon_caption(self.names[icon.name], icon.group, rng, phrasing)
        else:
            prompt = cap.icon_caption(icon.name, icon.group, rng, phrasing)
        meta = {"kind": "icon", "name": icon.name, "group": icon.group}
        return Sample("t2i", prompt, [], None, [composite(icon.rgba_at(self.size))], meta)

    def t2i_shapes(
        self, rng: np.random.Generator, n_objects: int | None = None, phrasing: int | None = None
    ) -> Sample:
        scene = kn.random_scene(rng, n_objects)
        prompt = cap.scene_caption(scene, rng, phrasing)
        return Sample("t2i", prompt, [], None, [kn.render_scene(scene, self.size)], {"kind": "shapes", "scene": scene})

    def t2i_word(
        self, rng: np.random.Generator, phrasing: int | None = None, p_random_letters: float = 0.15
    ) -> Sample:
        word = kn.random_word(rng, p_random_letters)
        prompt = cap.word_caption(word.text, rng, phrasing)
        return Sample("t2i", prompt, [], None, [kn.render_word(word, self.size)], {"kind": "word", "word": word})

    def t2i_chart(self, rng: np.random.Generator, phrasing: int | None = None) -> Sample:
        chart = kn.random_chart(rng)
        prompt = cap.chart_caption(chart, rng, phrasing)
        return Sample("t2i", prompt, [], None, [kn.render_chart(chart, self.size)], {"kind": "chart", "chart": chart})

    # -- instruction edits --------------------------------------------------------------------

    def edit(self, rng: np.random.Generator, kind: str | None = None) -> Sample:
        """refs=[source], outputs=[target]; meta["region"] = (size, size) bool, the edited pixels."""
        kind = kind or EDIT_KINDS[rng.integers(len(EDIT_KINDS))]
        prompt, src, tgt, meta = self._maker("_edit_", kind, EDIT_KINDS, "edit kind")(rng)
        return Sample("edit", prompt, [src], None, [tgt], {"kind": kind, **meta})

    def _scene_edit(self, src: kn.ShapeScene, tgt: kn.ShapeScene, region: np.ndarray, prompt: str):
        meta = {"source": src, "target": tgt, "region": region}
        return prompt, kn.render_scene(src, self.size), kn.render_scene(tgt, self.size), meta

    def _mask(self, obj: kn.ShapeObject, pad: int = 1) -> np.ndarray:
        return kn.object_mask(obj, pad, self.size)

    def _edit_recolor(self, rng):
        src = kn.random_scene(rng)
        obj = src.objects[rng.integers(len(src.objects))]
        new_color = rng.choice([c for c in kn.COLORS if c != obj.color])
        tgt = src.replace_object(obj, replace(obj, color=str(new_color)))
        prompt = cap.recolor_instruction(cap.object_ref(obj, src), str(new_color), rng)
        return self._scene_edit(src, tgt, self._mask(obj), prompt)

    def _edit_add(self, rng):
        src = kn.random_scene(rng, int(rng.integers(1, 4)))
        free = [c for c in kn.CELLS if src.object_at(c) is None]
        new = kn.random_object(rng, free[rng.integers(len(free))])
        tgt = src.add_object(new)
        return self._scene_edit(src, tgt, self._mask(new), cap.add_instruction(new, rng))

    def _edit_remove(self, rng):
        src = kn.random_scene(rng, int(rng.integers(2, 5)))
        obj = src.objects[rng.integers(len(src.objects))]
        tgt = src.replace_object(obj, None)
        prompt = cap.remove_instruction(cap.object_ref(obj, src), rng)
        return self._scene_edit(src, tgt, self._mask(obj), prompt)

    def _edit_move(self, rng):
        src = kn.random_scene(rng, int(rng.integers(1, 4)))
        obj = src.objects[rng.integers(len(src.objects))]
        free = [c for c in kn.CELLS if src.object_at(c) is None]
        moved = replace(obj, cell=free[rng.integers(len(free))], dx=0, dy=0)
        tgt = src.replace_object(obj, moved)
        prompt = cap.move_instruction(cap.object_ref(obj, src), moved.cell, rng)
        return self._scene_edit(src, tgt, self._mask(obj) | self._mask(moved), prompt)

    def _edit_background(self, rng):
        icon = self._icon(rng)
        names = list(kn.BACKGROUNDS)
        old, new = (names[i] for i in rng.choice(len(names), size=2, replace=False))
        rgba = icon.rgba_at(self.size)
        # Only pixels the icon does not fully cover change (anti-aliased edges included).
        region = rgba[..., 3] < 255
        meta = {"name": icon.name, "source_background": old, "target_background": new, "region": region}
        prompt = cap.background_instruction(new, rng)
        return prompt, composite(rgba, kn.BACKGROUNDS[old]), composite(rgba, kn.BACKGROUNDS[new]), meta

    def _edit_word(self, rng):
        src = kn.random_word(rng, p_random_letters=0.0)
        text = src.text
        while text.lower() == src.text.lower():
            text = kn.WORDS[rng.integers(len(kn.WORDS))]
        # Keep the source's letter case so that only the word changes.
        text = text.upper() if src.text.isupper() else text.capitalize() if src.text[0].isupper() else text
        tgt = replace(src, text=text)
        region = kn.word_mask(src, size=self.size) | kn.word_mask(tgt, size=self.size)
        meta = {"source": src, "target": tgt, "region": region}
        prompt = cap.word_change_instruction(src.text, tgt.text, rng)
        return prompt, kn.render_word(src, self.size), kn.render_word(tgt, self.size), meta

    # -- masked edit --------------------------------------------------------------------------

    def inpaint(self, rng: np.random.Generator, mask_kind: str | None = None) -> Sample:
        """A new object in one grid cell (empty or replacing what was there), inside a mask.

        mask_kind "cell": the cell's rectangle; "blob": an ellipse around the changed object(s).
        """
        mask_kind = mask_kind or ("cell", "blob")[rng.integers(2)]
        src = kn.random_scene(rng)
        cell = kn.CELLS[rng.integers(len(kn.CELLS))]
        old = src.object_at(cell)
        new = kn.random_object(rng, cell)
        while old is not None and (new.color, new.shape) == (old.color, old.shape):
            new = kn.random_object(rng, cell)
        tgt = src.replace_object(old, new) if old is not None else src.add_object(new)
        if mask_kind == "cell":
            x0, y0, x1, y1 = kn.cell_box(cell, self.size)
            region = np.zeros((self.size, self.size), bool)
            region[y0:y1, x0:x1] = True
        elif mask_kind == "blob":
            changed = self._mask(new, pad=2) | (self._mask(old, pad=2) if old else False)
            region = _ellipse_around(changed, extra=float(rng.uniform(0, 4)) * self.size / SIZE)
        else:
            raise ValueError(f"unknown mask kind {mask_kind!r}; known: cell, blob")
        mask = np.where(region, 255, 0).astype(np.uint8)
        meta = {"kind": mask_kind, "cell": cell, "source": src, "target": tgt, "region": region}
        return Sample(
            "inpaint",
            cap.inpaint_prompt(new, rng),
            [kn.render_scene(src, self.size)],
            mask,
            [kn.render_scene(tgt, self.size)],
            meta,
        )

    # -- multi-reference composition ----------------------------------------------------------

    def compose(
        self, rng: np.random.Generator, n_refs: int | None = None, phrasing: int | None = None
    ) -> Sample:
        """2-4 icon references placed into a named layout; the slot order is shuffled so the
        prompt, not the reference order, decides where each goes."""
        return self._render(self._compose_plan(rng, n_refs, phrasing))

    def _compose_plan(self, rng: np.random.Generator, n_refs: int | None = None, phrasing: int | None = None,
                      layout: str | None = None, assignment: list[int] | None = None) -> dict:
        """Every draw of a compose sample, nothing rendered: `_render` draws the pictures. A given
        `layout` and `assignment` (of `n_refs` references) are kept instead of drawn."""
        n = int(n_refs if n_refs is not None else rng.integers(2, 5))
        if n not in LAYOUTS_BY_COUNT:
            raise ValueError(f"compose takes 2..4 references, got {n}")
        icons = self._distinct_icons(rng, n)
        if layout is None:
            layout = LAYOUTS_BY_COUNT[n][rng.integers(len(LAYOUTS_BY_COUNT[n]))]
        boxes, phrases = LAYOUTS[layout]
        k = self.size // SIZE
        boxes = [tuple(v * k for v in box) for box in boxes]
        if assignment is None:
            assignment = [int(i) for i in rng.permutation(n)]  # assignment[slot] = reference index
        nouns = [self._noun(i, rng, phrasing, definite=True) for i in icons]
        prompt = cap.compose_prompt(nouns, phrases, assignment, rng, phrasing)
        meta = {
            "layout": layout,
            "names": [i.name for i in icons],
            "slots": [(r, box) for r, box in zip(assignment, boxes)],
        }
        return {"kind": "compose", "prompt": prompt, "icons": icons, "n_refs": n, "n_outputs": 1, "meta": meta}

    def _render(self, plan: dict) -> Sample:
        """The Sample of a `_compose_plan`, `_storyboard_plan` or `_storyboard_panel_plan`."""
        kind, meta = plan["kind"], plan["meta"]
        if kind == "compose":
            icons, k = plan["icons"], self.size // SIZE
            out = canvas(size=self.size)
            for r, (x0, y0, x1, y1) in meta["slots"]:
                paste(out, scaled_rgba(icons[r], x1 - x0, native=k > 1), x0, y0)
            refs = [composite(i.rgba_at(self.size)) for i in icons]
            return Sample("compose", plan["prompt"], refs, None, [out], meta)
        icon = plan["icons"][0]
        outputs = [render_panel(icon, p, self.size) for p in meta["panels"]]
        if kind == "storyboard":
            return Sample("storyboard", plan["prompt"], [], None, outputs, meta)
        return Sample("compose", plan["prompt"], [composite(icon.rgba_at(self.size))], None, outputs, meta)

    def layout_of(self, task: str, rng: np.random.Generator, boxes: bool = False) -> tuple[tuple, dict] | None:
        """(key, layout) of the sample `sample(task, rng)` would give, from its draws alone (no
        picture rendered): the batch key (task, #refs, #outputs[, slots with `boxes`]) and the
        layout that `sample(task, rng, layout=...)` keeps, so that every such sample has the same
        key. None for a task whose samples all share one layout."""
        if task not in PLANNED_TASKS:
            return None
        plan = self._plan(task, rng)
        key = (task, plan["n_refs"], plan["n_outputs"])
        kind, meta = plan["kind"], plan["meta"]
        if kind == "storyboard":
            return key, {"kind": kind, "n_panels": plan["n_outputs"]}
        layout = {"kind": kind, "n_refs": plan["n_refs"]}
        if boxes:
            key += tuple((r, tuple(box)) for r, box in meta["slots"])
            if kind == "compose":
                layout.update(layout=meta["layout"], assignment=[r for r, _ in meta["slots"]])
            else:
                layout.update(size=meta["panels"][0]["size"], position=meta["panels"][0]["position"])
        return key, layout

    def _plan(self, task: str, rng: np.random.Generator, layout: dict | None = None) -> dict:
        if layout is not None:
            if layout["kind"] == "storyboard_panel":
                return self._storyboard_panel_plan(rng, size=layout.get("size"), position=layout.get("position"))
            if layout["kind"] == "compose":
                return self._compose_plan(rng, layout["n_refs"], layout=layout.get("layout"),
                                          assignment=layout.get("assignment"))
            return self._storyboard_plan(rng, layout["n_panels"])
        if task == "compose" and self.storyboard_panels and rng.random() < 0.5:
            return self._storyboard_panel_plan(rng)
        return self._compose_plan(rng) if task == "compose" else self._storyboard_plan(rng)

    # -- storyboard ---------------------------------------------------------------------------

    def storyboard(
        self, rng: np.random.Generator, n_panels: int | None = None, phrasing: int | None = None
    ) -> Sample:
        """One character in M panels whose scene (background, place, size, tilt) changes."""
        return self._render(self._storyboard_plan(rng, n_panels, phrasing))

    def _storyboard_plan(
        self, rng: np.random.Generator, n_panels: int | None = None, phrasing: int | None = None
    ) -> dict:
        m = int(n_panels if n_panels is not None else rng.integers(2, self.max_panels + 1))
        if not 1 <= m <= MAX_PANELS:
            raise ValueError(f"storyboards have 1..{MAX_PANELS} panels, got {m}")
        icon = self._icon(rng)
        panels: list[dict] = []
        for i in range(m):
            panels.append(self._panel_scene(rng, panels[-1] if panels else None))
        noun = self._noun(icon, rng, phrasing)
        prompt = cap.storyboard_prompt(noun, [panel_phrase(p) for p in panels], rng, phrasing)
        meta = {"character": icon.name, "panels": panels}
        return {"kind": "storyboard", "prompt": prompt, "icons": [icon], "n_refs": 0, "n_outputs": m, "meta": meta}

    @staticmethod
    def _panel_scene(rng: np.random.Generator, previous: dict | None) -> dict:
        size = list(PANEL_SIZES)[rng.integers(len(PANEL_SIZES))]
        position = "center" if size == "large" else PANEL_POSITIONS[rng.integers(len(PANEL_POSITIONS))]
        # Consecutive panels never share a background: the scene visibly changes.
        choices = [b for b in kn.BACKGROUNDS if previous is None or b != previous["background"]]
        return {
            "background": choices[rng.integers(len(choices))],
            "position": position,
            "size": size,
            "angle": float(rng.integers(-10, 11)),
        }

    def storyboard_panel(self, rng: np.random.Generator, phrasing: int | None = None) -> Sample:
        """One storyboard panel drawn from a reference picture of its character, as a composition
        of that one reference: the icon (the whole frame, on white) placed in the panel's box
        (`panel_box`, in meta "slots" as compose's are), upright on white, the prompt a
        one-panel storyboard caption. A model trained on these with reference boxes draws a
        storyboard panel by panel from one picture, so the character stays the same (the
        pipeline's storyboard_by_panels); compose's own training already taught it to copy a
        reference into a box."""
        return self._render(self._storyboard_panel_plan(rng, phrasing))

    def _storyboard_panel_plan(self, rng: np.random.Generator, phrasing: int | None = None,
                               size: str | None = None, position: str | None = None) -> dict:
        """A given panel `size` and `position` are kept (the scene's draws are made all the same)."""
        icon = self._icon(rng)
        # Upright: the caption does not say the tilt, and a copy at an unsaid random angle is
        # learned as a blur of all of them. On white: a copy onto a coloured scene must redraw
        # every edge token (at 16 px a token, a 56-100 px icon is nearly all edges), and came out
        # mangled after 200 steps; the pipeline paints the scene's background with an edit after.
        panel = {**self._panel_scene(rng, None), "angle": 0.0, "background": "white"}
        if size is not None:
            panel.update(size=size, position=position)
        prompt = cap.storyboard_panel_prompt(self._noun(icon, rng, phrasing), panel_phrase(panel))
        meta = {"character": icon.name, "panels": [panel], "slots": [(0, panel_box(panel, self.size))]}
        return {"kind": "storyboard_panel", "prompt": prompt, "icons": [icon], "n_refs": 1, "n_outputs": 1,
                "meta": meta}

    # -- style transfer -----------------------------------------------------------------------

    def style(
        self, rng: np.random.Generator, style: str | None = None, phrasing: int | None = None
    ) -> Sample:
        """ref = icon A in style S, output = icon B in style S; the prompt names B."""
        style = style or list(STYLES)[rng.integers(len(STYLES))]
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; known: {tuple(STYLES)}")
        a, b = self._distinct_icons(rng, 2)
        meta = {"style": style, "content": b.name, "ref_content": a.name}
        return Sample(
            "style",
            cap.style_prompt(self._noun(b, rng, phrasing), rng, phrasing),
            [STYLES[style](a, self.size)],
            None,
            [STYLES[style](b, self.size)],
            meta,
        )

    # -- text: a word drawn from its glyph ------------------------------------------------------

    def text(self, rng: np.random.Generator, phrasing: int | None = None, p_random_letters: float = 0.15) -> Sample:
        """ref = the word's glyph (plain, black, in the box its ink occupies: glyphs.word_glyph),
        output = the word in the font and ink the prompt names. meta: "word", "kind" = "word"."""
        word = kn.random_word(rng, p_random_letters)
        prompt = cap.text_caption(word.text, word.color, word.font, rng, phrasing)
        return Sample("text", prompt, [word_glyph(word, self.size)], None, [kn.render_word(word, self.size)],
                      {"kind": "word", "word": word})

    # -- geometric control: every t2i image yields one sample of each ------------------------

    def _control(self, task: str, kind: str, rng: np.random.Generator, source: Sample | None) -> Sample:
        """ref = the control made from a t2i image (controls.control_at), output = that image;
        the prompt is the image's caption. meta: the t2i sample's, plus "control" = `kind`."""
        source = source or self.t2i(rng)
        truth = source.outputs[0]
        meta = {**source.meta, "control": kind, "t2i_prompt": source.prompt}
        control = ctl.control_at(kind, truth, self.size // SIZE)
        return Sample(task, source.prompt, [control], None, [truth], meta)

    def edges(self, rng: np.random.Generator, source: Sample | None = None) -> Sample:
        return self._control("edges", "edges", rng, source)

    def sketch(self, rng: np.random.Generator, source: Sample | None = None) -> Sample:
        return self._control("sketch", "sketch", rng, source)

    def colourise(self, rng: np.random.Generator, source: Sample | None = None) -> Sample:
        return self._control("colourise", "colourise", rng, source)

    def upscale(
        self, rng: np.random.Generator, source: Sample | None = None, factor: int | None = None,
        p_no_prompt: float = 0.5,
    ) -> Sample:
        """The control is the image at 1/`factor` size, bicubic back to full size; half the
        prompts are empty (an upscale is mostly asked for without words). meta["small"]: the
        small image, meta["factor"]."""
        factor = factor or int(UPSCALE_FACTORS[rng.integers(len(UPSCALE_FACTORS))])
        if factor not in UPSCALE_FACTORS:
            raise ValueError(f"the upscale task is trained for factors {UPSCALE_FACTORS}, not {factor}")
        s = self._control("upscale", f"upscale_{factor}x", rng, source)
        s.meta |= {"factor": factor, "small": ctl.downsample(s.outputs[0], factor)}
        if rng.random() < p_no_prompt:
            s.prompt = ""
        return s


def _ellipse_around(region: np.ndarray, extra: float = 0.0) -> np.ndarray:
    """The smallest axis-aligned ellipse (plus `extra` px) that covers the bounding box of `region`.

    An ellipse with semi-axes sqrt(2) times a rectangle's half-sides passes through its corners.
    """
    ys, xs = np.nonzero(region)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    ay = (ys.max() - ys.min() + 1) / 2 * np.sqrt(2) + extra
    ax = (xs.max() - xs.min() + 1) / 2 * np.sqrt(2) + extra
    yy, xx = np.mgrid[0 : region.shape[0], 0 : region.shape[1]]
    return ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0
