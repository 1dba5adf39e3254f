"""Compose by placing: where each reference goes in the picture, as one box per reference.

Two fields of the Compose table: a Layout choice (free, a few named layouts, custom) and the
boxes themselves as JSON text, `[[x0, y0, x1, y1], ...]` in fractions of the picture, one per
reference in the references' order (null: that reference is free). The text is the field's
value, so the named endpoint takes JSON text, or nothing and a layout name. Between them sits
a canvas: a square frame with one coloured, labelled rectangle per reference, drawn from the
text; dragging a rectangle moves it, its corner handle resizes it, and either writes the text
back (and the layout becomes "custom"). The canvas is a small script over a plain gr.HTML that
only reads and writes the text box, so whatever re-renders the page, the text stays the truth.
"""

from __future__ import annotations

import gradio as gr

from seedling.backend.parameters import boxes_text, parse_boxes
from seedling.backend.specs import MIN_BOX_SIDE
from seedling.model.data import tasks as tk
from seedling.model.prompt_expansion.layouts import reference_boxes
from seedling.ui.common import PRIVATE, Dropdown, Textbox
from seedling.ui.fields import Field

FREE = "free (no boxes)"
CUSTOM = "custom"
SIDE = tk.SIZE  # the training layouts are drawn on this many px


def _training(name: str) -> list:
    """A training layout's boxes in slot order, as fractions: where the model learned to place."""
    return reference_boxes(name, list(range(len(tk.LAYOUTS[name][0]))))


def _px(*boxes) -> list[tuple[float, float, float, float]]:
    return [tuple(v / SIDE for v in box) for box in boxes]


def _side_by_side(n: int) -> list:
    if n in (2, 3):  # the training layouts "halves" and "thirds", exactly
        return _training("halves" if n == 2 else "thirds")
    side = SIDE // n  # n squares in a row, centred
    return _px(*((i * side, (SIDE - side) // 2, (i + 1) * side, (SIDE + side) // 2) for i in range(n)))


def _top_and_bottom(n: int) -> list:
    return [(y0, x0, y1, x1) for x0, y0, x1, y1 in _side_by_side(n)]


def _grid(n: int) -> list:
    if n in (3, 4):  # the training layouts "two_over_one" and "quadrants"
        return _training("two_over_one" if n == 3 else "quadrants")
    return _px(*{1: [(0, 0, 128, 128)], 2: [(0, 0, 64, 64), (64, 64, 128, 128)]}[n])


LAYOUTS = {"side by side": _side_by_side, "top and bottom": _top_and_bottom, "grid 2x2": _grid}
CHOICES = [FREE, *LAYOUTS, CUSTOM]
NEW_BOX = (0.25, 0.25, 0.75, 0.75)  # a reference added to custom boxes starts in the middle


def layout_boxes(layout: str | None, n: int) -> list | None:
    """The boxes of a named layout for n references; None for free, custom or no references."""
    if layout in (None, "", FREE, CUSTOM) or n == 0:
        return None
    if layout not in LAYOUTS:
        raise gr.Error(f"Layout {str(layout)[:40]!r} is not one of: {', '.join(CHOICES)}.")
    return LAYOUTS[layout](n)


def layout_of(boxes) -> str:
    """The layout a restore shows for stored boxes: its name when they are a named layout's."""
    if not boxes:
        return FREE
    for name, boxes_for in LAYOUTS.items():
        if _same(boxes, boxes_for(len(boxes))):
            return name
    return CUSTOM


def _same(a, b) -> bool:
    """Two lists of boxes (or None) are the same, to float rounding; False for anything else."""
    if a is None or b is None:
        return a is b
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x is None or y is None:
            if x is not y:
                return False
            continue
        try:
            if len(x) != 4 or any(abs(float(p) - q) > 1e-6 for p, q in zip(x, y)):
                return False
        except (TypeError, ValueError):
            return False
    return True


def text_of(boxes) -> str:
    return boxes_text(boxes) or ""


def parse_text(text: str | None) -> list | None:
    """The boxes in the field's text (None when empty); a sentence when it is no JSON list. Each
    box is checked by the job spec."""
    text = (text or "").strip()
    if not text:
        return None
    value = parse_boxes(text)
    if value is None:
        raise gr.Error(
            "The boxes are not a JSON list: give one [x0, y0, x1, y1] (fractions of the picture) or "
            "null per reference, e.g. [[0, 0.25, 0.5, 0.75], [0.5, 0.25, 1, 0.75]], or leave them empty."
        )
    return value


def spec_boxes(text, layout, *refs) -> list | None:
    """The spec's boxes: the text when it has any, else the named layout's for the references given."""
    boxes = parse_text(text)
    return boxes if boxes is not None else layout_boxes(layout, _count(refs))


def fields(refs: tuple[str, ...]) -> tuple[Field, Field]:
    """The Layout choice, the canvas (built beside it) and the Boxes text: two rows of the table."""

    def make_layout(ctx):
        return Dropdown(
            CHOICES,
            value=FREE,
            label="Layout (compose mode)",
            info="where each reference goes; drag a box to move it, its corner to resize it",
            elem_id=f"{ctx.prefix}-layout",
        )

    def make_boxes(ctx):
        ctx.extras["canvas"] = gr.HTML(
            f'<div class="seedling-boxes" id="{ctx.prefix}-canvas-frame"></div>',
            elem_id=f"{ctx.prefix}-canvas",
            js_on_load=None,
            apply_default_css=False,
        )
        return Textbox(
            value="",
            label="Boxes (x0, y0, x1, y1 per reference, fractions; empty = free)",
            lines=1,
            elem_id=f"{ctx.prefix}-boxes",
        )

    return (
        Field("layout", make_layout, default=FREE, from_params=lambda p, c: layout_of(p.get("boxes"))),
        Field(
            "boxes",
            make_boxes,
            spec="boxes",
            to_spec=spec_boxes,
            reads=("layout", *refs),
            default="",
            from_params=lambda p, c: text_of(p.get("boxes")),
        ),
    )


def _count(refs) -> int:
    return sum(r is not None for r in refs)


def picked(layout, *refs):
    """A layout chosen by hand fills the boxes (free empties them; custom keeps them)."""
    if layout == CUSTOM:
        return gr.skip()
    return text_of(layout_boxes(layout, _count(refs)))


def references_changed(layout, text, *refs):
    """A reference added or removed: a named layout is redrawn for the new count; custom boxes
    keep theirs, a new reference's box starts in the middle, a removed one's last box goes."""
    n = _count(refs)
    if layout in LAYOUTS:
        return text_of(layout_boxes(layout, n))
    if layout != CUSTOM or n == 0:
        return gr.skip()
    try:
        boxes = parse_text(text) or []
    except gr.Error:
        return gr.skip()  # the person is typing: the spec will say what is wrong
    if len(boxes) == n:
        return gr.skip()
    return text_of((boxes + [NEW_BOX] * n)[:n])


def boxes_changed(layout, text, *refs):
    """Boxes that are no longer the chosen layout's (dragged on the canvas, typed) make it custom."""
    if layout == CUSTOM:
        return gr.skip()
    try:
        boxes = parse_text(text)
        named = layout_boxes(layout, _count(refs))
    except gr.Error:
        return CUSTOM
    return gr.skip() if _same(boxes, named) else CUSTOM


def from_expansion(result, values: dict) -> dict:
    """Expand on a compose prompt that names places ("on the left", "at the top right") shows
    their boxes, unless the person placed the boxes by hand (layout custom). Subjects named in
    the prompt go to the reference that looks like them (prompt_expansion/placement.py), so the
    references need not be added in the sentence's order."""
    from seedling.model.prompt_expansion.placement import icon_image, place_references

    if values.get("mode") != "compose" or values.get("layout") == CUSTOM:
        return {}
    if not (result.grounded and result.boxes):
        return {}
    slots = sorted((int(n[3:]), n) for n in values if n.startswith("ref") and n[3:].isdigit())  # ref1, ref2, ...
    refs = [values[n] for _, n in slots if values[n] is not None]
    boxes = result.boxes
    if len(refs) == len(boxes):
        boxes = place_references(result, refs, icon_image).boxes or boxes
    return {"layout": layout_of(boxes), "boxes": text_of(boxes)}


def wire(tab, refs: tuple[str, ...]) -> None:
    images = [tab[name] for name in refs]
    layout, boxes = tab["layout"], tab["boxes"]
    glue = {"api_visibility": PRIVATE, "queue": False}
    layout.input(picked, [layout, *images], boxes, **glue)
    for image in images:  # .change: a History send or a restore fills a reference too
        image.change(references_changed, [layout, boxes, *images], boxes, **glue)
    # .change: the canvas writes a drag as the text's new value, which Gradio reports as a change
    boxes.change(boxes_changed, [layout, boxes, *images], layout, **glue)
    tab["mode"].input(
        lambda mode: (FREE, "") if mode == "style" else (gr.skip(), gr.skip()),
        tab["mode"],
        [layout, boxes],
        **glue,
    )
    gr.on(None, None, None, None, js=canvas_js(tab.spec.prefix, len(refs)), api_visibility=PRIVATE)


def canvas_js(prefix: str, slots: int) -> str:
    """The canvas: runs once per page; draws the boxes of `#{prefix}-boxes` whenever its text (or
    the references shown) changes, and writes a drag back as that box's text plus an input event,
    as typing would."""
    return (
        _CANVAS_JS.replace("__PREFIX__", prefix)
        .replace("__SLOTS__", str(slots))
        .replace("__MIN__", repr(MIN_BOX_SIDE))
    )


_CANVAS_JS = """
() => {
  const P = '__PREFIX__', SLOTS = __SLOTS__, MIN = __MIN__, STEP = 1 / 64;
  const COLOURS = ['#e6194b', '#3cb44b', '#4363d8', '#f58231'];
  const style = document.createElement('style');
  style.textContent = `
    #${P}-canvas .seedling-boxes { position: relative; width: min(100%, 220px); aspect-ratio: 1;
      margin: 4px auto; background: repeating-conic-gradient(#eee 0 25%, #fafafa 0 50%) 0 0 / 16px 16px;
      border: 1px solid #999; touch-action: none; user-select: none; }
    #${P}-canvas .seedling-box { position: absolute; box-sizing: border-box; border: 3px solid;
      background-size: cover; background-position: center; cursor: move; opacity: 0.85; }
    #${P}-canvas .seedling-box span { position: absolute; left: 0; top: 0; padding: 0 5px;
      color: white; font: bold 13px sans-serif; }
    #${P}-canvas .seedling-handle { position: absolute; right: -7px; bottom: -7px; width: 12px;
      height: 12px; border: 2px solid white; cursor: nwse-resize; }
    #${P}-canvas .seedling-note { position: absolute; inset: 0; display: flex; align-items: center;
      justify-content: center; text-align: center; padding: 16px; color: #555; font: 13px sans-serif; }`;
  document.head.appendChild(style);
  const text = () => document.querySelector(`#${P}-boxes textarea, #${P}-boxes input`);
  const read = () => {
    try { const v = JSON.parse(text()?.value || 'null'); return Array.isArray(v) ? v : null; }
    catch (e) { return null; }
  };
  // the references shown, in slot order: their numbers and pictures label the boxes
  const shown = () => [...Array(SLOTS).keys()]
    .map(i => ({ slot: i + 1, img: document.querySelector(`#${P}-ref-${i} img`) }))
    .filter(r => r.img && r.img.src);
  let drawn = null, drag = null;
  const draw = () => {
    const frame = document.getElementById(`${P}-canvas-frame`);
    if (!frame || drag) return;
    const refs = shown(), key = (text()?.value || '') + '|' + refs.map(r => r.img.src).join(' ');
    if (key === drawn && frame.dataset.drawn === key) return;
    drawn = frame.dataset.drawn = key;
    frame.replaceChildren();
    const boxes = read();
    if (!boxes || !boxes.some(b => Array.isArray(b))) {
      const note = document.createElement('div');
      note.className = 'seedling-note';
      note.textContent = 'Free: the prompt places the references. Pick a layout to place them here.';
      frame.appendChild(note);
      return;
    }
    boxes.forEach((b, j) => {
      if (!Array.isArray(b) || b.length !== 4) return;
      const colour = COLOURS[j % COLOURS.length], label = boxes.length === refs.length ? refs[j].slot : j + 1;
      const el = document.createElement('div');
      el.className = 'seedling-box';
      el.dataset.index = j;
      el.title = `Reference ${label}`;
      el.style.borderColor = colour;
      if (boxes.length === refs.length) el.style.backgroundImage = `url("${refs[j].img.src}")`;
      place(el, b);
      const tag = document.createElement('span');
      tag.textContent = label;
      tag.style.background = colour;
      const handle = document.createElement('div');
      handle.className = 'seedling-handle';
      handle.style.background = colour;
      el.append(tag, handle);
      frame.appendChild(el);
    });
  };
  const place = (el, [x0, y0, x1, y1]) => {
    el.style.left = `${x0 * 100}%`; el.style.top = `${y0 * 100}%`;
    el.style.width = `${(x1 - x0) * 100}%`; el.style.height = `${(y1 - y0) * 100}%`;
  };
  const snap = v => Math.round(v / STEP) * STEP;
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  document.addEventListener('pointerdown', e => {
    const el = e.target.closest?.(`#${P}-canvas .seedling-box`);
    const boxes = read();
    if (!el || !boxes || !Array.isArray(boxes[+el.dataset.index])) return;
    e.preventDefault();
    const rect = el.parentElement.getBoundingClientRect();
    drag = { el, boxes, j: +el.dataset.index, resize: e.target.classList.contains('seedling-handle'),
             x: e.clientX, y: e.clientY, w: rect.width, h: rect.height };
    drag.box = drag.boxes[drag.j].map(Number);
  });
  document.addEventListener('pointermove', e => {
    if (!drag) return;
    const [x0, y0, x1, y1] = drag.box, dx = (e.clientX - drag.x) / drag.w, dy = (e.clientY - drag.y) / drag.h;
    if (drag.resize) {
      drag.now = [x0, y0, clamp(snap(x1 + dx), x0 + MIN, 1), clamp(snap(y1 + dy), y0 + MIN, 1)];
    } else {
      const mx = clamp(snap(x0 + dx), 0, 1 - (x1 - x0)), my = clamp(snap(y0 + dy), 0, 1 - (y1 - y0));
      drag.now = [mx, my, mx + (x1 - x0), my + (y1 - y0)];
    }
    place(drag.el, drag.now);
  });
  document.addEventListener('pointerup', () => {
    if (!drag) return;
    const done = drag;
    drag = null;
    if (!done.now) return;
    done.boxes[done.j] = done.now.map(v => Math.round(v * 1e6) / 1e6);
    const box = text();
    box.value = JSON.stringify(done.boxes);
    box.dispatchEvent(new Event('input', { bubbles: true }));
  });
  setInterval(draw, 150);
}
"""
