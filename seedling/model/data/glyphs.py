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

from seedling.model.data import knowledge as kn
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
    of the image), its ink as tall as FILL of the box (smaller when it would be wider than FILL of it)."""
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"a glyph box is (x0, y0, x1, y1) as fractions with x0 < x1 and y0 < y1; got {box}")
    bw, bh = (x1 - x0) * width, (y1 - y0) * height
    probe = _plain_font(100)  # ink size scales with the font size: measure once, solve for the fit
    l, t, r, b = probe.getbbox(text)
    scale = min(bh * FILL / max(1, b - t), bw * FILL / max(1, r - l))
    font = _plain_font(max(6, int(100 * scale)))
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


# -- the text task: a word image from its glyph ------------------------------------------------
# How a prompt names the fonts of the training words (knowledge._FONT_FILES keys); "default" is
# the plain font, what a prompt that names none gets.
FONT_WORDS = {
    "dejavu-sans-bold": ("bold", "in bold letters"),
    "dejavu-sans": ("sans-serif", "in a sans-serif font"),
    "dejavu-serif-bold": ("bold serif", "in a bold serif font"),
    "dejavu-mono-bold": ("typewriter", "in a typewriter font"),
}
TYPICAL_CAP_HEIGHT = 30  # px at 128: the middle of the training words' cap heights (24-36)


def word_glyph(spec, size: int | None = None) -> np.ndarray:
    """The glyph image a training word (knowledge.WordSpec) is made from: its text, plain, black,
    in the box its own ink occupies."""
    size = size or kn.SIZE
    return render_glyph(spec.text, size, size, glyph_box_of(kn.word_box(spec, size), size, size))


def font_in_prompt(prompt: str) -> str:
    """The training font a prompt names ("in a typewriter font" -> "dejavu-mono-bold"), else "default"."""
    low = (prompt or "").lower()
    # Longest phrases first: "bold serif" is not "bold".
    for key, words in sorted(FONT_WORDS.items(), key=lambda kv: -len(kv[1][0])):
        if any(w in low for w in words):
            return key
    return "default"


def prompt_glyph(prompt: str, width: int, height: int) -> np.ndarray | None:
    """The glyph image for a prompt that asks for text (None if it asks none): the quoted text in
    the box a typical training word of that text and font occupies, on a width x height canvas."""
    text = glyph_text(prompt)
    if text is None:
        return None
    font = font_in_prompt(prompt)
    spec = kn.WordSpec(text, font=font if font in kn.available_fonts() else "default",
                       cap_height=TYPICAL_CAP_HEIGHT)
    side = min(width, height)  # a square word layout, centred on the canvas
    x0, y0, x1, y1 = kn.word_box(spec, side)
    dx, dy = (width - side) // 2, (height - side) // 2
    return render_glyph(text, width, height, glyph_box_of((x0 + dx, y0 + dy, x1 + dx, y1 + dy), width, height))
