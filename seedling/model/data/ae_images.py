"""Random training images for the autoencoder: everything the DiT will ever have to draw.

Icons at random sizes/places on white or coloured backgrounds (t2i, compose, storyboard),
flat shapes (knowledge scenes, edits), words in several fonts, and the style variants
(grayscale, inverted, outline, pixelated, sepia, dark background). Deterministic from the rng.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from seedling.model.data.icons import Icon

PALETTE = [(230, 30, 40), (40, 170, 60), (40, 80, 220), (245, 210, 30), (245, 130, 20), (140, 50, 180),
           (20, 20, 20), (255, 255, 255), (120, 120, 120), (250, 160, 190), (40, 200, 210), (130, 80, 40)]
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _font(rng: np.random.Generator, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _paste_icon(canvas: Image.Image, icon: Icon, box: tuple[int, int, int], angle: float = 0.0) -> None:
    x, y, s = box
    im = Image.fromarray(icon.rgba, "RGBA").resize((s, s), Image.LANCZOS)
    if angle:
        im = im.rotate(angle, resample=Image.BICUBIC)
    canvas.alpha_composite(im, (x, y))


def _stylise(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    k = rng.integers(7)
    if k == 0:
        return ImageOps.grayscale(im).convert("RGB")
    if k == 1:
        return ImageOps.invert(im)
    if k == 2:
        return ImageOps.invert(im.convert("L").filter(ImageFilter.FIND_EDGES)).convert("RGB")
    if k == 3:
        return im.resize((16, 16), Image.BILINEAR).resize(im.size, Image.NEAREST)
    if k == 4:
        return ImageOps.posterize(im, 2)
    if k == 5:
        g = np.asarray(ImageOps.grayscale(im), dtype=np.float32)[..., None] / 255
        return Image.fromarray((g * np.array([240, 200, 150])).astype(np.uint8))
    return im


def random_training_image(rng: np.random.Generator, icons: list[Icon], size: int = 128) -> np.ndarray:
    bg = (255, 255, 255) if rng.random() < 0.6 else PALETTE[rng.integers(len(PALETTE))]
    canvas = Image.new("RGBA", (size, size), bg + (255,))
    kind = rng.choice(["icon", "icons", "shapes", "word", "bars"], p=[0.35, 0.15, 0.25, 0.15, 0.10])
    if kind == "icon":
        s = int(rng.integers(size // 2, size + 1))
        x, y = (int(rng.integers(0, size - s + 1)) for _ in range(2))
        _paste_icon(canvas, icons[rng.integers(len(icons))], (x, y, s), float(rng.normal(0, 8)) if rng.random() < 0.3 else 0)
    elif kind == "icons":
        n = int(rng.integers(2, 5))
        s = size // 2
        for j in range(n):
            _paste_icon(canvas, icons[rng.integers(len(icons))], ((j % 2) * s, (j // 2) * s, s))
    elif kind == "shapes":
        d = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(1, 5))):
            c = PALETTE[rng.integers(7)]
            r = int(rng.integers(10, 20))
            cx, cy = (int(rng.integers(r, size - r)) for _ in range(2))
            shape = rng.integers(3)
            if shape == 0:
                d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c)
            elif shape == 1:
                d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=c)
            else:
                d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=c)
    elif kind == "word":
        n = int(rng.integers(2, 9))
        word = "".join(_LETTERS[i] for i in rng.integers(0, 26 if rng.random() < 0.7 else len(_LETTERS), n))
        fs = int(rng.integers(20, 44))
        d = ImageDraw.Draw(canvas)
        col = PALETTE[6] if rng.random() < 0.6 else PALETTE[rng.integers(7)]
        d.text((size / 2, size / 2), word, font=_font(rng, fs), fill=col, anchor="mm")
    else:
        d = ImageDraw.Draw(canvas)
        n = int(rng.integers(2, 6))
        w = (size - 16) // n
        for j in range(n):
            h = int(rng.integers(1, 10)) * (size - 24) // 9
            d.rectangle((8 + j * w + 2, size - 8 - h, 8 + (j + 1) * w - 2, size - 8), fill=PALETTE[rng.integers(7)])
        d.line((6, size - 8, size - 6, size - 8), fill=(0, 0, 0), width=2)
    im = canvas.convert("RGB")
    if rng.random() < 0.15:
        im = _stylise(im, rng)
    return np.asarray(im)
