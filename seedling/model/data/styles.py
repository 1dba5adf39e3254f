"""Looks for the "style" task: each maps an icon to a (size, size, 3) uint8 image (128 px unless
asked; other sizes draw the icon natively from the vector font).

A style pair is two different icons in one look; the model learns to carry the look over.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from seedling.model.data import knowledge as kn
from seedling.model.data.icons import Icon

SIZE = kn.SIZE


def composite(rgba: np.ndarray, background=kn.WHITE) -> np.ndarray:
    """(h, w, 4) uint8 over a flat colour -> (h, w, 3) uint8 (integer math: fast and exact)."""
    a = rgba[..., 3:4].astype(np.uint16)
    bg = np.asarray(background, np.uint16)
    return ((rgba[..., :3] * a + bg * (255 - a) + 127) // 255).astype(np.uint8)


def gray(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.299, 0.587, 0.114])).round().clip(0, 255).astype(np.uint8)


def _style_grayscale(icon: Icon, size: int = SIZE) -> np.ndarray:
    return np.repeat(gray(composite(icon.rgba_at(size)))[..., None], 3, axis=2)


def _style_inverted(icon: Icon, size: int = SIZE) -> np.ndarray:
    return 255 - composite(icon.rgba_at(size))


def _style_outline(icon: Icon, size: int = SIZE) -> np.ndarray:
    # Edges of the luminance, thickened to ~2 px so they survive an f8 autoencoder.
    edges = np.array(Image.fromarray(gray(composite(icon.rgba_at(size)))).filter(ImageFilter.FIND_EDGES))
    edges = np.where(edges > 40, 255, 0).astype(np.uint8)
    edges[[0, -1], :] = edges[:, [0, -1]] = 0  # the filter sees an edge at the canvas border
    edges = np.asarray(Image.fromarray(edges).filter(ImageFilter.MaxFilter(2 * max(1, size // SIZE) + 1)))
    return np.repeat((255 - edges)[..., None], 3, axis=2)


def _style_pixelated(icon: Icon, size: int = SIZE) -> np.ndarray:
    small = Image.fromarray(composite(icon.rgba_at(size))).resize((SIZE // 8, SIZE // 8), Image.BOX)
    return np.asarray(small.resize((size, size), Image.NEAREST)).copy()  # a 16x16 grid of blocks at any size


def _style_posterized(icon: Icon, size: int = SIZE) -> np.ndarray:
    return np.asarray(ImageOps.posterize(Image.fromarray(composite(icon.rgba_at(size))), 2)).copy()


def _style_sepia(icon: Icon, size: int = SIZE) -> np.ndarray:
    g = gray(composite(icon.rgba_at(size))).astype(np.float32)[..., None]
    return (g * np.array([1.0, 0.86, 0.66]) + np.array([20.0, 10.0, 0.0])).clip(0, 255).astype(np.uint8)


def _style_dark(icon: Icon, size: int = SIZE) -> np.ndarray:
    return composite(icon.rgba_at(size), (30, 30, 45))


STYLES = {
    "grayscale": _style_grayscale,
    "inverted": _style_inverted,
    "outline": _style_outline,
    "pixelated": _style_pixelated,
    "posterized": _style_posterized,
    "sepia": _style_sepia,
    "dark background": _style_dark,
}
