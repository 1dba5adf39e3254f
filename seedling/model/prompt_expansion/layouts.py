"""Where things go: grid cells for shape objects, compose slots for references, storyboard panels.

Pure functions of parsed prompts. Each returns what it decided plus notes for the person when it
had to choose (a default place, a colour, a moved object).
"""

from __future__ import annotations

import math

from seedling.model.data import knowledge as kn
from seedling.model.data import tasks as tk
from seedling.model.prompt_expansion import lexicon as lx
from seedling.model.prompt_expansion.parse import ShapeScenePlan
from seedling.model.prompt_expansion.result import Match
from seedling.model.prompt_expansion.story import panel_scene

# Default places for n objects nobody placed: symmetric, then the rest of the grid.
_DEFAULT_CELLS = {
    1: ("center",),
    2: ("left", "right"),
    3: ("left", "center", "right"),
    4: ("top left", "top right", "bottom left", "bottom right"),
}
MAX_TRAINED_OBJECTS = 4  # random_scene draws 1-4 objects


def _cell_xy(cell: str) -> tuple[float, float]:
    x0, y0, x1, y1 = kn.cell_box(cell)
    return (x0 + x1) / 2, (y0 + y1) / 2


def _nearest_free(cell: str, used: set[str]) -> str:
    x, y = _cell_xy(cell)
    free = [c for c in kn.CELLS if c not in used]
    return min(free, key=lambda c: (math.dist((x, y), _cell_xy(c)), kn.CELLS.index(c)))


def resolve_scene(plan: ShapeScenePlan) -> tuple[list[tuple[str, str, str]], list[str], list[Match]]:
    """(colour, shape, cell) objects for a parsed shape prompt, with notes and matches."""
    notes: list[str] = []
    matches: list[Match] = []
    groups = []  # (mention, count, wanted cells)
    for o in plan.objects:
        count = o.count or max(1, len(o.cells))
        if o.count and len(o.cells) > o.count:
            notes.append(
                f"{o.count} {o.shape}(s) but {len(o.cells)} places given: using the first {o.count}."
            )
        groups.append([o, count, list(o.cells[:count])])
        if o.color_word:
            matches.append(Match(o.color_word, "color", o.color, 1.0))
        if o.count:
            matches.append(Match(str(o.count), "count", str(o.count), 1.0))
    for rel in plan.relations:  # "a red circle above a blue square"
        a, b = groups[rel.a], groups[rel.b]
        if a[2] or b[2]:
            continue
        first, second = {
            "above": ("top", "bottom"),
            "below": ("bottom", "top"),
            "left": ("left", "right"),
            "right": ("right", "left"),
            "beside": ("left", "right"),
        }[rel.kind]
        a[2], b[2] = [first], [second]
        matches.append(Match(rel.kind, "position", f"{first} / {second}", 1.0))
    total = sum(g[1] for g in groups)
    if total > len(kn.CELLS):
        notes.append(f"{total} objects do not fit the 3x3 grid: keeping 9.")
    if plan.arrangement == "row" and not any(g[2] for g in groups) and total <= 3:
        order = list(_DEFAULT_CELLS[2] if total == 2 else ("left", "center", "right"))
    else:
        order = list(_DEFAULT_CELLS.get(total, ())) + [
            c for c in kn.CELLS if c not in _DEFAULT_CELLS.get(total, ())
        ]
    used: set[str] = set()
    objects: list[tuple[str, str, str]] = []
    for mention, count, wanted in groups:
        color = mention.color
        if color is None:
            color = "black"
            notes.append(f"No colour given for the {mention.shape}: using black.")
        for k in range(count):
            if len(used) == len(kn.CELLS):
                break
            if k < len(wanted):
                cell = wanted[k]
                if cell in used:
                    moved = _nearest_free(cell, used)
                    notes.append(f"Two objects at the {cell}: moved one to the {moved}.")
                    cell = moved
                else:
                    matches.append(Match(cell, "position", cell, 1.0))
            else:
                cell = next(c for c in order if c not in used and c not in {w for g in groups for w in g[2]})
            used.add(cell)
            objects.append((color, mention.shape, cell))
    if not all(g[2] for g in groups):
        notes.append("Placed: " + ", ".join(f"{c} {s} at the {cell}" for c, s, cell in objects) + ".")
    if len(objects) > MAX_TRAINED_OBJECTS:
        notes.append(
            f"The model was trained on scenes of up to {MAX_TRAINED_OBJECTS} shapes; "
            f"{len(objects)} may not all appear."
        )
    return objects, notes, matches


# --------------------------------------------------------------------------------------------
# Compose
# --------------------------------------------------------------------------------------------


def choose_layout(n: int, wanted: list[str | None]) -> str:
    """The training layout for n references that fits the wanted cells best."""
    options = tk.LAYOUTS_BY_COUNT[n]
    return min(options, key=lambda name: (_assignment_cost(name, wanted)[1], options.index(name)))


def _assignment_cost(layout: str, wanted: list[str | None]) -> tuple[list[int], float]:
    """Greedy slot for each wanted cell (nearest free slot; unplaced parts fill the rest in order).

    Returns (assignment, total distance) with assignment[slot] = part index.
    """
    boxes, _ = tk.LAYOUTS[layout]
    centers = [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in boxes]
    slot_of: dict[int, int] = {}
    cost = 0.0
    pairs = sorted(
        (
            (math.dist(_cell_xy(c), centers[s]), p, s)
            for p, c in enumerate(wanted)
            if c
            for s in range(len(boxes))
        ),
    )
    taken: set[int] = set()
    for d, p, s in pairs:
        if p in slot_of or s in taken:
            continue
        slot_of[p], cost = s, cost + d
        taken.add(s)
    free = [s for s in range(len(boxes)) if s not in taken]
    for p in range(len(wanted)):
        if p not in slot_of:
            slot_of[p] = free.pop(0)
    assignment = [0] * len(boxes)
    for p, s in slot_of.items():
        assignment[s] = p
    return assignment, cost


def assign_slots(n: int, wanted: list[str | None]) -> tuple[str, list[int]]:
    """(layout, assignment[slot] = part index) for n parts with optional wanted cells."""
    layout = choose_layout(n, wanted)
    return layout, _assignment_cost(layout, wanted)[0]


def arranged_layout(kind: str, n: int) -> str | None:
    """The training layout for n references 'side by side' (row) or 'in a grid'; None if none fits."""
    return tk.ARRANGED_LAYOUTS.get(kind, {}).get(n)


def boxes_for_slots(slots: tuple[str, ...]) -> list[tuple[float, float, float, float]] | None:
    """Boxes for references whose slot phrases are known (reference order), None if no layout has
    exactly those slots."""
    for layout in tk.LAYOUTS_BY_COUNT.get(len(slots), ()):
        phrases = list(tk.LAYOUTS[layout][1])
        if set(phrases) == set(slots):
            return reference_boxes(layout, [slots.index(ph) for ph in phrases])
    return None


def reference_boxes(layout: str, assignment: list[int]) -> list[tuple[float, float, float, float]]:
    """Each reference's box (x0, y0, x1, y1) as fractions of the output, in reference order, for a
    layout and its assignment (assignment[slot] = reference index): what `pipe(boxes=...)` takes."""
    boxes, _ = tk.LAYOUTS[layout]
    out: list[tuple[float, float, float, float]] = [(0.0, 0.0, 1.0, 1.0)] * len(assignment)
    for slot, ref in enumerate(assignment):
        out[ref] = tuple(v / tk.SIZE for v in boxes[slot])
    return out


# --------------------------------------------------------------------------------------------
# Storyboard panels
# --------------------------------------------------------------------------------------------


def plan_panels(texts: list[str], n: int) -> tuple[list[dict], list[str], list[Match]]:
    """Panel scenes (background, position, size, angle) for n panels from their texts.

    Texts beyond n are dropped; fewer texts than n repeat the last one's size and place with new
    backgrounds. Consecutive panels never share a background (as in training): a repeated scene
    gets the next default background.
    """
    notes: list[str] = []
    matches: list[Match] = []
    panels: list[dict] = []
    defaults = iter(lx.DEFAULT_PANEL_BACKGROUNDS * 3)
    for i in range(n):
        text = texts[min(i, len(texts) - 1)] if texts else ""
        scene = panel_scene(text) if i < len(texts) else {"size": None, "position": None, "background": None}
        size = scene["size"] or "medium"
        position = scene["position"] or "center"
        if size == "large" and position != "center":
            notes.append(f"Panel {i + 1}: large panels are centred.")
            position = "center"
        if position not in tk.PANEL_POSITIONS:
            position = "center"
        background = scene["background"]
        if background is not None and panels and background == panels[-1]["background"]:
            notes.append(f"Panel {i + 1}: same scene as panel {i}; using another background so it changes.")
            background = None
        if background is None:
            background = next(b for b in defaults if not panels or b != panels[-1]["background"])
        elif i < len(texts):
            matches.append(Match(text, "background", background, 1.0))
        panels.append({"background": background, "position": position, "size": size, "angle": 0.0})
    return panels, notes, matches
