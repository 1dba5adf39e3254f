"""Glyph images: the text a prompt quotes, drawn plainly, for the model to restyle.

A model that must invent letter shapes from a text embedding spells badly; one that is shown the
letters and asked to restyle them (font, ink, size, place) spells what it is shown. The pipeline
renders the prompt's quoted text with one plain font into a glyph image that enters as a
reference with the "glyph" role and a box in the output; training pairs a glyph with the word
image it became, at the word's own box. Precedents: GlyphControl, AnyText, TextDiffuser-2.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from seedling.model.prompt_expansion.parse import word_to_render

GLYPH_ROLE = "glyph"
MAX_GLYPH_CHARS = 24  # longer text does not fit a legible line at the sizes the model draws
FILL = 0.8  # the glyph line fills this share of its box's height (and at most its width)


def glyph_text(prompt: str) -> str | None:
    """The text a prompt asks to be written (quoted, or 'the word hello'), None if it asks none.

    Raises ValueError with a sentence when the text is too long to be drawn legibly.
    """
    text = word_to_render(prompt or "")
    if text is not None and len(text) > MAX_GLYPH_CHARS:
        raise ValueError(
            f"the quoted text has {len(text)} characters; the model writes at most {MAX_GLYPH_CHARS} "
            "in one line: shorten it or split it over several images"
        )
    return text


@lru_cache(maxsize=32)
def _plain_font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled font: the same glyph shapes on every machine, no system font needed.
    return ImageFont.load_default(size=size)


def render_glyph(text: str, width: int, height: int, box=(0.1, 0.3, 0.9, 0.7)) -> np.ndarray:
    """(height, width, 3) uint8: `text` in black on white, centred in `box` (fractions x0, y0, x1, y1
    of the image), as large as fits FILL of the box."""
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"a glyph box is (x0, y0, x1, y1) as fractions with x0 < x1 and y0 < y1; got {box}")
    bw, bh = (x1 - x0) * width, (y1 - y0) * height
    size = max(6, int(bh * FILL))
    font = _plain_font(size)
    l, t, r, b = font.getbbox(text)
    if r - l > bw * FILL:  # too wide: smaller type, never squeezed letters
        size = max(6, int(size * bw * FILL / (r - l)))
        font = _plain_font(size)
        l, t, r, b = font.getbbox(text)
    im = Image.new("RGB", (width, height), (255, 255, 255))
    cx, cy = (x0 + x1) / 2 * width, (y0 + y1) / 2 * height
    ImageDraw.Draw(im).text((cx - (l + r) / 2, cy - (t + b) / 2), text, font=font, fill=(0, 0, 0))
    return np.asarray(im)


def glyph_box_of(ink_box, width: int, height: int) -> tuple[float, float, float, float]:
    """The glyph box (fractions) for a training word whose ink occupies `ink_box` (pixels,
    exclusive): the box grown so that FILL of its height is the ink's height."""
    x0, y0, x1, y1 = ink_box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = (x1 - x0) / 2 / FILL, (y1 - y0) / 2 / FILL
    return (
        max(0.0, (cx - half_w) / width),
        max(0.0, (cy - half_h) / height),
        min(1.0, (cx + half_w) / width),
        min(1.0, (cy + half_h) / height),
    )
