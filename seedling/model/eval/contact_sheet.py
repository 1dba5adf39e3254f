"""A labelled grid of generations per suite: the picture that goes with metrics.json.

One row per suite. Each cell shows the case's inputs as thumbnails (references, then the
inpainting mask), the output(s) framed green (judged correct) or red (judged wrong), and the
start of the prompt.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 128  # output area
THUMB = 32  # input thumbnails
PAD = 6
TEXT_LINES = 2
LABEL_W = 120  # row label column
OK, BAD = (40, 170, 60), (210, 40, 40)


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _tile_outputs(outputs: list[np.ndarray]) -> Image.Image:
    """1 output fills the cell; M > 1 panels share it in a near-square grid."""
    if len(outputs) == 1:
        return Image.fromarray(outputs[0]).resize((CELL, CELL))
    cols = math.ceil(math.sqrt(len(outputs)))
    rows = math.ceil(len(outputs) / cols)
    side = CELL // cols
    tile = Image.new("RGB", (CELL, CELL), (235, 235, 235))
    y_off = (CELL - rows * side) // 2
    for k, o in enumerate(outputs):
        r, c = divmod(k, cols)
        tile.paste(Image.fromarray(o).resize((side, side), Image.LANCZOS), (c * side, y_off + r * side))
    return tile


def render_cell(
    prompt: str, inputs: list[np.ndarray], outputs: list[np.ndarray], ok: bool | None
) -> Image.Image:
    font = _font(10)
    w = CELL + 2 * PAD
    h = THUMB + 4 + CELL + 2 * PAD + TEXT_LINES * 12 + 4
    cell = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(cell)
    for k, im in enumerate(inputs[:4]):
        cell.paste(Image.fromarray(im).resize((THUMB, THUMB), Image.LANCZOS), (PAD + k * (THUMB + 2), 0))
    y = THUMB + 4
    if ok is not None:
        draw.rectangle((PAD - 3, y - 3 + PAD, PAD + CELL + 2, y + PAD + CELL + 2), fill=OK if ok else BAD)
    cell.paste(_tile_outputs(outputs), (PAD, y + PAD))
    lines = textwrap.wrap(prompt, width=26)[:TEXT_LINES]
    for k, line in enumerate(lines):
        draw.text((PAD, y + CELL + 2 * PAD + k * 12), line, fill=(30, 30, 30), font=font)
    return cell


def contact_sheet(rows: list[tuple[str, list[Image.Image]]]) -> Image.Image:
    """Rows of (label, cells) into one image; the label goes in a left column."""
    if not rows:
        return Image.new("RGB", (LABEL_W, 40), "white")
    cell_w = max(c.width for _, cells in rows for c in cells) if any(cells for _, cells in rows) else CELL
    cell_h = max((c.height for _, cells in rows for c in cells), default=CELL)
    n_cols = max(len(cells) for _, cells in rows)
    sheet = Image.new("RGB", (LABEL_W + max(1, n_cols) * cell_w, len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    for r, (label, cells) in enumerate(rows):
        y = r * cell_h
        for k, line in enumerate(textwrap.wrap(label, width=16)[:6]):
            draw.text((6, y + THUMB + 10 + k * 15), line, fill="black", font=font)
        for c, cell in enumerate(cells):
            sheet.paste(cell, (LABEL_W + c * cell_w, y))
        draw.line((0, y + cell_h - 1, sheet.width, y + cell_h - 1), fill=(200, 200, 200))
    return sheet
