"""Glyph images (seedling/model/data/glyphs.py): what the prompt quotes, drawn legibly where asked."""

from __future__ import annotations

import numpy as np
import pytest

from seedling.model.data import knowledge as kn
from seedling.model.data.glyphs import MAX_GLYPH_CHARS, glyph_box_of, glyph_text, render_glyph
from seedling.model.eval.ocr import normalize_text, ocr_word, tesseract_missing_reason


def test_glyph_text_from_prompts():
    assert glyph_text('a poster with the word "SALE"') == "SALE"
    assert glyph_text("a sign saying hello") == "hello"
    assert glyph_text("a red circle") is None
    with pytest.raises(ValueError, match="shorten it"):
        glyph_text('"' + "x" * (MAX_GLYPH_CHARS + 1) + '"')


def _ink_box(img: np.ndarray):
    ys, xs = np.nonzero(img.min(-1) < 128)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


@pytest.mark.parametrize("size", [(128, 128), (512, 512), (384, 256)])
def test_glyph_sits_inside_its_box_and_is_deterministic(size):
    w, h = size
    box = (0.5, 0.1, 0.95, 0.4)
    a = render_glyph("Sale", w, h, box)
    assert a.shape == (h, w, 3) and np.array_equal(a, render_glyph("Sale", w, h, box))
    x0, y0, x1, y1 = _ink_box(a)
    assert x0 >= box[0] * w and x1 <= box[2] * w and y0 >= box[1] * h and y1 <= box[3] * h
    assert (x1 - x0) > 0.4 * (box[2] - box[0]) * w or (y1 - y0) > 0.4 * (box[3] - box[1]) * h  # not tiny


def test_long_text_gets_smaller_type_not_outside_the_box():
    img = render_glyph("wonderful", 128, 128, (0.25, 0.25, 0.75, 0.75))
    x0, _, x1, _ = _ink_box(img)
    assert 32 <= x0 and x1 <= 96


def test_bad_box_is_a_sentence():
    with pytest.raises(ValueError, match="fractions"):
        render_glyph("a", 64, 64, (0.5, 0.5, 0.4, 0.9))


@pytest.mark.skipif(tesseract_missing_reason() is not None, reason=str(tesseract_missing_reason()))
@pytest.mark.parametrize("text", ["SALE", "hello", "Open", "zebra"])
def test_tesseract_reads_the_glyph(text):
    assert normalize_text(ocr_word(render_glyph(text, 128, 128)) or "") == normalize_text(text)


def test_training_glyph_box_covers_the_word():
    spec = kn.WordSpec("table", cap_height=30)
    ink = kn.word_box(spec)
    gx0, gy0, gx1, gy1 = glyph_box_of(ink, kn.SIZE, kn.SIZE)
    assert gx0 * kn.SIZE <= ink[0] and gx1 * kn.SIZE >= ink[2] and gy0 * kn.SIZE <= ink[1] and gy1 * kn.SIZE >= ink[3]
    glyph = render_glyph(spec.text, kn.SIZE, kn.SIZE, (gx0, gy0, gx1, gy1))
    g = _ink_box(glyph)
    centre = ((g[0] + g[2]) / 2, (g[1] + g[3]) / 2)
    assert abs(centre[0] - (ink[0] + ink[2]) / 2) <= 3 and abs(centre[1] - (ink[1] + ink[3]) / 2) <= 3
