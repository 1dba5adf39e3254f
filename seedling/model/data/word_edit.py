"""Word edits through glyphs: "change the word to "SALE"" on a picture that shows a word.

The edit task was never shown how letters are spelled, so it cannot write a new word; the text
task can (it restyles a plain glyph: data/glyphs.py). A word edit is therefore planned here and
drawn by the text task, the way AnyText and TextDiffuser-2 edit text: find the word's ink in
the picture (on a flat background), read its look (ink colour; the font and letter size too when
the prompt quotes the old word), draw the new word's glyph where the old word stood, let the text
task restyle it in that ink and font, and keep every pixel outside the words' region.

`plan_word_edit(prompt, picture)` returns None when the prompt is no word edit or the picture
shows no ink on a flat background; the pipeline then runs the ordinary edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from seedling.model.data import captions as cap
from seedling.model.data import knowledge as kn
from seedling.model.data.glyphs import TYPICAL_CAP_HEIGHT, glyph_box_of, glyph_text, render_glyph
from seedling.model.prompt_expansion.parse import quoted_texts, strip_quotes

# An instruction to change what a text says; the new text is quoted (the last quote, when the old
# one is quoted too: 'replace "cat" with "dog"').
_WORD_EDIT = re.compile(
    r"\b(?:change|replace|make|rewrite|swap|turn|edit|say|says|read|reads|write|spell|correct|fix)\b", re.IGNORECASE
)
INK_DIFF = 40  # a pixel this far (max over channels) from the background is ink
MIN_INK_PIXELS = 12
REGION_PAD = 2  # px the edited region reaches beyond both words' ink, plus REGION_GROW of the new word's height
REGION_GROW = 0.2  # the text task may draw the new word a little larger than its glyph


@dataclass(frozen=True)
class WordEdit:
    """What a word edit draws and where. `prompt` and `glyph` are the text task's input; `region`
    (H, W) bool is what the edit may change; `background` the picture's flat colour."""

    old: str | None
    new: str
    font: str
    color: str
    cap_height: int  # px at the 128 px scale of knowledge.WordSpec
    prompt: str
    glyph: np.ndarray
    region: np.ndarray
    background: tuple[int, int, int]
    ink_box: tuple[int, int, int, int]  # the old word's ink, pixels (x0, y0, x1, y1), exclusive


def word_edit_texts(prompt: str) -> tuple[str | None, str] | None:
    """(old text or None, new text) when `prompt` asks to change a picture's words, else None."""
    quoted = quoted_texts(prompt or "")
    if not quoted or not _WORD_EDIT.search(strip_quotes(prompt)):
        return None
    glyph_text(f'"{quoted[-1]}"')  # too long a text raises the glyph's own sentence
    return (quoted[0] if len(quoted) > 1 else None), quoted[-1]


def _background(x: np.ndarray) -> np.ndarray:
    """The most common colour of the picture's 1 px border, (3,) int."""
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]]).astype(np.int64)
    keys, counts = np.unique(border[:, 0] << 16 | border[:, 1] << 8 | border[:, 2], return_counts=True)
    k = int(keys[counts.argmax()])
    return np.array([k >> 16, (k >> 8) & 255, k & 255])


def find_ink(picture: np.ndarray) -> tuple[tuple[int, int, int], tuple[int, int, int, int], np.ndarray] | None:
    """(background colour, ink box (x0, y0, x1, y1) exclusive, (H, W) bool ink) of a picture that
    shows ink on a flat background, or None: too little ink, or no flat border (a photo)."""
    x = np.asarray(picture)
    bg = _background(x)
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]]).astype(np.int64)
    if float((np.abs(border - bg).max(axis=1) <= 8).mean()) < 0.9:
        return None
    ink = np.abs(x.astype(np.int64) - bg).max(axis=2) > INK_DIFF
    if ink.sum() < MIN_INK_PIXELS:
        return None
    ys, xs = np.nonzero(ink)
    return tuple(int(v) for v in bg), (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), ink


def ink_colour(picture: np.ndarray, ink: np.ndarray, background) -> str:
    """The palette name (knowledge.WORD_COLORS) nearest to the median of the strongest ink."""
    x = np.asarray(picture).astype(np.float64)
    diff = np.abs(x - np.asarray(background, np.float64)).max(axis=2)
    strong = ink & (diff >= 0.7 * diff[ink].max())
    median = np.median(x[strong], axis=0)
    names = sorted(set(kn.WORD_COLORS))
    return min(names, key=lambda n: float(np.sum((np.asarray(kn.PALETTE[n]) - median) ** 2)))


def _ink_size(text: str, font: str, cap_height: int, side: int) -> tuple[int, int]:
    """(height, width) of the ink of `text` drawn as a training word on a `side` px canvas."""
    x0, y0, x1, y1 = kn.word_box(kn.WordSpec(text, font=font, cap_height=cap_height), side)
    return y1 - y0, x1 - x0


def _fit_cap_height(text: str, font: str, height: int, side: int) -> int:
    """The cap height (128 px scale) at which `text` in `font` is `height` px tall on the canvas.
    Several fit when the word was squeezed to the canvas's width; then the one nearest the
    typical training cap height."""
    caps = range(8, 80)
    return min(caps, key=lambda c: (abs(_ink_size(text, font, c, side)[0] - height), abs(c - TYPICAL_CAP_HEIGHT)))


def _match(text: str, font: str, cap_height: int, side: int, ink: np.ndarray, box) -> float:
    """IoU of `text` drawn in `font` against the picture's ink, their boxes' top-left corners aligned."""
    alpha = kn._text_alpha(kn.WordSpec(text, font=font, cap_height=cap_height), side) > 127
    x0, y0, x1, y1 = box
    h, w = max(alpha.shape[0], y1 - y0), max(alpha.shape[1], x1 - x0)
    a = np.zeros((h, w), bool)
    b = np.zeros((h, w), bool)
    a[: alpha.shape[0], : alpha.shape[1]] = alpha
    b[: y1 - y0, : x1 - x0] = ink[y0:y1, x0:x1]
    return float((a & b).sum() / max(1, (a | b).sum()))


def _typical_ink_ratio(font: str, side: int) -> float:
    """Median ink height over cap height of the training words in `font` (old text unknown)."""
    words = kn.WORDS[:: max(1, len(kn.WORDS) // 60)]
    return float(np.median([_ink_size(w, font, kn.MIN_CAP_HEIGHT + 6, side)[0] for w in words])) / (
        (kn.MIN_CAP_HEIGHT + 6) * side / kn.SIZE)


def plan_word_edit(prompt: str, picture, seed: int = 0) -> WordEdit | None:
    """The word edit `prompt` asks of `picture` (an (H, W, 3) uint8 array or PIL image), or None
    when it asks none or the picture shows no ink on a flat background.

    The old word's font and size are read off its ink when the prompt quotes it ('replace "cat"
    with "dog"': the training font whose drawing of "cat" overlaps the ink most); otherwise the
    plain font at the size the ink's height suggests. The new word's glyph is centred where the
    old word's ink was, as large as the new word would be in that font and size."""
    texts = word_edit_texts(prompt)
    if texts is None:
        return None
    old, new = texts
    x = np.asarray(picture.convert("RGB") if hasattr(picture, "convert") else picture)
    found = find_ink(x)
    if found is None:
        return None
    bg, box, ink = found
    H, W = x.shape[:2]
    side = min(H, W)
    height = box[3] - box[1]
    fonts = kn.available_fonts()
    if old:
        fits = [(f, _fit_cap_height(old, f, height, side)) for f in fonts]
        font, cap_height = max(fits, key=lambda fc: _match(old, fc[0], fc[1], side, ink, box))
    else:
        font = "default"
        cap_height = max(8, round(height * kn.SIZE / side / _typical_ink_ratio(font, side)))
    color = ink_colour(x, ink, bg)
    nh, nw = _ink_size(new, font, cap_height, side)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    new_box = (round(cx - nw / 2), round(cy - nh / 2), round(cx - nw / 2) + nw, round(cy - nh / 2) + nh)
    glyph = render_glyph(new, W, H, glyph_box_of(new_box, W, H))
    region = np.zeros((H, W), bool)
    pad = REGION_PAD + round(REGION_GROW * nh)
    for x0, y0, x1, y1 in (box, new_box):
        region[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = True
    rng = np.random.default_rng(seed)
    text_prompt = cap.text_caption(new, color, font, rng, phrasing=0)
    return WordEdit(old, new, font, color, int(cap_height), text_prompt, glyph, region, bg, box)


def composite(picture, drawn, edit: WordEdit) -> np.ndarray:
    """The picture with the text task's drawing inside the edit's region. The drawing is ink on
    white, laid on the picture's background by multiplying (white shows the background, black
    stays black), so a coloured background stays its colour; outside the region every pixel is
    the picture's own."""
    x = np.asarray(picture).astype(np.float64)
    d = np.asarray(drawn).astype(np.float64)
    laid = d * np.asarray(edit.background, np.float64) / 255.0
    out = np.where(edit.region[..., None], laid, x)
    return np.round(out).clip(0, 255).astype(np.uint8)
