"""DreamEval-lite judges that need no learned model.

- Shape scenes: pixels -> nearest palette colour -> connected blobs -> shape by geometry -> grid
  cell; `check_scene` compares the parsed objects with the spec exactly.
- Bar charts: bar heights read off the column profile above the x axis.
- Backgrounds: the named colour nearest to an image's border (background edits).
- Icons: nearest-neighbour retrieval among the real OpenMoji icons in a small pixel space with
  the content re-framed (`IconIndex`), which also judges compositions (per slot) and storyboards
  (per panel).
- Words: see ocr.py (the Tesseract binary through a subprocess).
- Preservation: PSNR over a region (outside the edited pixels).

All judges take (H, W, 3) uint8 arrays (or PIL images) and are exact on the ground-truth images
of model/data/tasks.py; tests/test_eval_detectors.py holds them to that.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from seedling.model.data import knowledge as kn
from seedling.model.data.icons import ICON_SIZE, Icon


def as_array(image) -> np.ndarray:
    """PIL image or array -> (H, W, 3) uint8 array."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {arr.shape} {arr.dtype}")
    return arr


# --------------------------------------------------------------------------------------------
# Colours and blobs
# --------------------------------------------------------------------------------------------

_PALETTE_NAMES = list(kn.PALETTE)
_PALETTE_RGB = np.array([kn.PALETTE[c] for c in _PALETTE_NAMES], np.float32)


def palette_labels(image, max_dist: float = 80.0, background=kn.WHITE) -> np.ndarray:
    """(H, W) int: index into PALETTE of each pixel's nearest colour, -1 for background/unsure.

    A pixel counts only when it is nearer to a palette colour than to the background and within
    `max_dist` of it: blurred edges (half colour, half white) fall out instead of forming halos
    of a wrong colour.
    """
    x = as_array(image).astype(np.float32)
    refs = np.concatenate([_PALETTE_RGB, np.array([background], np.float32)])
    d = np.linalg.norm(x[:, :, None, :] - refs[None, None], axis=-1)  # (H, W, K+1)
    nearest = d.argmin(-1)
    ok = (nearest < len(_PALETTE_NAMES)) & (d.min(-1) <= max_dist)
    return np.where(ok, nearest, -1)


def connected_components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a bool mask, each as an (n, 2) array of (y, x) pixels.

    Vectorised label propagation: every pixel takes the smallest label among itself and its
    neighbours, then follows its label's own label (pointer jumping), until nothing changes.
    That converges in a few dozen whole-array steps instead of a Python loop per pixel.
    """
    h, w = mask.shape
    big = h * w  # label of background pixels
    lab = np.where(mask, np.arange(h * w).reshape(h, w), big)
    while True:
        m = lab.copy()
        np.minimum(m[1:], lab[:-1], out=m[1:])
        np.minimum(m[:-1], lab[1:], out=m[:-1])
        np.minimum(m[:, 1:], lab[:, :-1], out=m[:, 1:])
        np.minimum(m[:, :-1], lab[:, 1:], out=m[:, :-1])
        m = np.where(mask, m, big)
        flat = np.append(m.ravel(), big)
        m = flat[flat[m]]  # pointer jumping, twice
        if np.array_equal(m, lab):
            break
        lab = m
    ys, xs = np.nonzero(mask)
    labels = lab[ys, xs]
    order = np.argsort(labels, kind="stable")
    splits = np.flatnonzero(np.diff(labels[order])) + 1
    return [np.stack([ys[g], xs[g]], axis=1) for g in np.split(order, splits)] if len(ys) else []


# --------------------------------------------------------------------------------------------
# Shape scenes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectedObject:
    color: str
    shape: str
    cell: str
    area: int  # pixels
    box: tuple[int, int, int, int]  # inclusive (x0, y0, x1, y1)


def classify_shape(pixels: np.ndarray) -> str:
    """circle / square / triangle from a blob's (y, x) pixels.

    An upright triangle has ~1/3 of its area in the top half of its box (circles and squares
    ~1/2); a square fills its box (~1.0), a circle ~pi/4.
    """
    ys, xs = pixels[:, 0], pixels[:, 1]
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    area = len(pixels)
    fill = area / ((y1 - y0 + 1) * (x1 - x0 + 1))
    top = np.count_nonzero(ys < (y0 + y1 + 1) / 2)
    if top / area < 0.40:
        return "triangle"
    return "square" if fill > 0.89 else "circle"


def parse_scene(image, min_area: int = 120, max_dist: float = 80.0) -> list[DetectedObject]:
    """Objects in a shapes scene, sorted by cell.

    Blobs of one colour whose centres fall in the same cell are merged: a scene has at most one
    object per cell, so a split blob is one object, not two.
    """
    labels = palette_labels(image, max_dist)
    found: dict[tuple[int, str], list[np.ndarray]] = {}
    for ci in np.unique(labels[labels >= 0]):
        for pix in connected_components(labels == ci):
            if len(pix) < min_area // 4:  # specks never make an object, even merged
                continue
            cell = kn.cell_of_point(pix[:, 1].mean(), pix[:, 0].mean())
            found.setdefault((int(ci), cell), []).append(pix)
    objects = []
    for (ci, cell), parts in found.items():
        pix = np.concatenate(parts)
        if len(pix) < min_area:
            continue
        ys, xs = pix[:, 0], pix[:, 1]
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        objects.append(DetectedObject(_PALETTE_NAMES[ci], classify_shape(pix), cell, len(pix), box))
    return sorted(objects, key=lambda o: (kn.CELLS.index(o.cell), o.color))


def _facts(objs) -> Counter:
    return Counter((o.color, o.shape, o.cell) for o in objs)


def match_scene(image, scene: kn.ShapeScene) -> dict[str, bool]:
    """Exact match and its parts: count, colours, shapes and cells (each as multisets)."""
    got = parse_scene(image)
    want = scene.objects
    return {
        "exact": _facts(got) == _facts(want),
        "count": len(got) == len(want),
        "colors": Counter(o.color for o in got) == Counter(o.color for o in want),
        "shapes": Counter(o.shape for o in got) == Counter(o.shape for o in want),
        "cells": Counter(o.cell for o in got) == Counter(o.cell for o in want),
    }


def check_scene(image, scene: kn.ShapeScene) -> bool:
    """True iff the image shows exactly the spec's objects: colour, shape, count and cell."""
    return _facts(parse_scene(image)) == _facts(scene.objects)


# --------------------------------------------------------------------------------------------
# Bar charts
# --------------------------------------------------------------------------------------------


def parse_chart(image, min_width: int = 3) -> list[int]:
    """Bar values, left to right: runs of coloured columns above the axis, height in units."""
    labels = palette_labels(image)
    black = _PALETTE_NAMES.index("black")
    plot = (labels >= 0) & (labels != black)
    plot[kn.CHART_BASELINE - 1 :] = False  # the axis and below
    plot[:, : kn.CHART_AXIS_X + 2] = False  # the y axis and its left
    heights = plot.sum(0)
    cols = heights >= kn.CHART_UNIT // 2
    values, x = [], 0
    while x < len(cols):
        if not cols[x]:
            x += 1
            continue
        start = x
        while x < len(cols) and cols[x]:
            x += 1
        if x - start >= min_width:
            values.append(round(float(np.median(heights[start:x])) / kn.CHART_UNIT))
    return values


def check_chart(image, chart: kn.ChartSpec) -> bool:
    return parse_chart(image) == list(chart.values)


# --------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------


def border_color(image) -> np.ndarray:
    """(3,) float: the median colour of the image's 2 px border (its background, for our images)."""
    x = as_array(image).astype(np.float32)
    border = np.concatenate(
        [x[:2].reshape(-1, 3), x[-2:].reshape(-1, 3), x[:, :2].reshape(-1, 3), x[:, -2:].reshape(-1, 3)]
    )
    return np.median(border, axis=0)


def _nearest_name(rgb: np.ndarray, table: dict, names=None) -> str:
    """The key of `table` (name -> RGB), among `names` (default: all), nearest to `rgb`."""
    return min(list(names or table), key=lambda n: float(np.linalg.norm(rgb - np.array(table[n]))))


def dominant_border_color(image, names=None) -> str:
    """Name (key of BACKGROUNDS) nearest to the median colour of the image's 2 px border."""
    return _nearest_name(border_color(image), kn.BACKGROUNDS, names)


def ink_color(image, names=None) -> str | None:
    """Name (key of PALETTE) nearest to the median colour of the pixels far from the background
    (a word's ink); None when nothing stands out from the background."""
    x = as_array(image).astype(np.float32)
    ink = x[np.linalg.norm(x - border_color(image), axis=-1) > 100]
    if len(ink) < 10:
        return None
    return _nearest_name(np.median(ink, axis=0), kn.PALETTE, names)


# --------------------------------------------------------------------------------------------
# Icon retrieval
# --------------------------------------------------------------------------------------------


def _open3(mask: np.ndarray) -> np.ndarray:
    """Morphological opening with a 3x3 square: removes specks and 1-2 px threads.

    A decoded flat background is not flat (autoencoder blocks, sampling noise); without this,
    its speckles far from the icon would set the content frame.
    """
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(im.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))) > 0


def _center(x: np.ndarray, side: int, fill) -> np.ndarray:
    """`x` in the middle of a `side` x `side` canvas of colour `fill` (its middle, if larger)."""
    h, w = min(x.shape[0], side), min(x.shape[1], side)
    top, left = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
    out = np.empty((side, side, 3), np.uint8)
    out[:] = fill
    y0, x0 = (side - h) // 2, (side - w) // 2
    out[y0 : y0 + h, x0 : x0 + w] = x[top : top + h, left : left + w]
    return out


def _pad_square(x: np.ndarray, fill) -> np.ndarray:
    h, w = x.shape[:2]
    side = max(h, w)
    sq = np.empty((side, side) + x.shape[2:], x.dtype)
    sq[:] = fill
    sq[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = x
    return sq


class IconIndex:
    """Nearest-neighbour retrieval of icons by appearance, on any flat background colour.

    Images are reduced to `size` x `size` and compared by RMS distance of colour, after one of
    two framings of their content (the icon's alpha; the query's pixels that differ from its
    border colour):

    - "center" (t2i, compose slots): the content is moved to the middle of the 128 px canvas at
      its own scale, so a few pixels of shift do not matter but "large square" and "small
      square" stay different. A query of another size (a compose slot) is first resized to 128.
    - "crop" (storyboard panels): the content is cropped and padded to a square, so neither
      where nor how large the icon is drawn matters. `angles` adds rotated copies of every icon
      (panels tilt the character by up to 10 degrees); a name scores its best copy.

    The query's background b is read from its border. A candidate drawn on b is
    P + b*(1 - a) (P = premultiplied colour, a = alpha), linear in b, so its distance to the query
    comes from a few precomputed sums for any background without re-rendering.
    """

    def __init__(self, icons: list[Icon], size: int = 32, framing: str = "center", angles=(0.0,)):
        if framing not in ("center", "crop"):
            raise ValueError(f"framing must be 'center' or 'crop', got {framing!r}")
        self.size, self.framing = size, framing
        self.names = [i.name for i in icons]
        if len(set(self.names)) != len(self.names):
            raise ValueError("icon names must be unique")
        self._pos = {n: k for k, n in enumerate(self.names)}
        feats = [self._icon_features(icon, a) for icon in icons for a in angles]
        self._owner = np.repeat(np.arange(len(icons)), len(angles))  # (V,) icon of each copy
        self._p = np.stack([f[0] for f in feats])  # (V, S*S*3) premultiplied colour in [0, 1]
        self._a = np.stack([f[1] for f in feats])  # (V, S*S) alpha in [0, 1]
        # For |P - a*b|^2 = |P|^2 - 2 b.(sum_px a P) + |b|^2 sum_px a^2 (b = background colour).
        self._p2 = (self._p**2).sum(1)
        self._ap = np.einsum("vp,vpc->vc", self._a, self._p.reshape(len(feats), -1, 3))  # (V, 3)
        self._a2 = (self._a**2).sum(1)
        self._aliases: dict[str, set[str]] | None = None

    def _icon_features(self, icon: Icon, angle: float) -> tuple[np.ndarray, np.ndarray]:
        im = Image.fromarray(icon.rgba, "RGBA")
        if angle:
            im = im.rotate(angle, resample=Image.BICUBIC)
        im = im.crop(im.getchannel("A").point(lambda v: 255 if v > 24 else 0).getbbox())
        side = max(im.size) if self.framing == "crop" else ICON_SIZE
        framed = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        framed.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
        im = framed
        # "RGBa" is premultiplied: resizing it averages colour weighted by coverage, as compositing does.
        small = np.asarray(im.convert("RGBa").resize((self.size, self.size), Image.BOX), np.float32) / 255
        return small[..., :3].ravel(), small[..., 3].ravel()

    def embed(self, image, tol: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
        """(query colour (S*S*3,) in [0, 1], background (3,) in [0, 1]) in this index's framing."""
        x = as_array(image)
        if self.framing == "center" and x.shape[:2] != (ICON_SIZE, ICON_SIZE):
            x = np.asarray(Image.fromarray(x).resize((ICON_SIZE, ICON_SIZE), Image.LANCZOS))
        bg = border_color(x)
        fill = np.round(bg).astype(np.uint8)
        content = _open3(np.linalg.norm(x.astype(np.float32) - bg, axis=-1) > tol)
        # Rows/columns with at least 2 content pixels: a stray pixel must not set the frame.
        rows, cols = np.flatnonzero(content.sum(1) >= 2), np.flatnonzero(content.sum(0) >= 2)
        if len(rows) and len(cols):
            x = x[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        x = _pad_square(x, fill) if self.framing == "crop" else _center(x, ICON_SIZE, fill)
        small = np.asarray(Image.fromarray(x).resize((self.size, self.size), Image.BOX), np.float32) / 255
        return small.ravel(), (bg / 255).astype(np.float32)

    def distances(self, image, among=None) -> tuple[list[str], np.ndarray]:
        """Candidate names and the RMS colour distance of their best copy to `image` (0 = same)."""
        q, b = self.embed(image)
        if among is None:
            names, rows = self.names, slice(None)  # a slice: no copy of the feature matrices
            col = self._owner
        else:
            names = list(dict.fromkeys(among))
            missing = [n for n in names if n not in self._pos]
            if missing:
                raise KeyError(f"not in the index: {missing[:5]}")
            col_of = np.full(len(self.names), -1)
            col_of[[self._pos[n] for n in names]] = np.arange(len(names))
            rows = np.flatnonzero(col_of[self._owner] >= 0)
            col = col_of[self._owner[rows]]
        qv = q - np.tile(b, self.size * self.size)  # query minus background
        dot = self._p[rows] @ qv - self._a[rows] @ (qv.reshape(-1, 3) @ b)
        cand2 = self._p2[rows] - 2 * self._ap[rows] @ b + float(b @ b) * self._a2[rows]
        d = np.sqrt(np.maximum(float(qv @ qv) - 2 * dot + cand2, 0.0) / len(q))
        best = np.full(len(names), np.inf)
        np.minimum.at(best, col, d)  # the best copy (rotation) of each name
        return names, best

    def rank(self, image, k: int = 5, among=None) -> list[str]:
        """The `k` nearest icon names, best first (optionally only among `among`)."""
        names, d = self.distances(image, among)
        return [names[i] for i in np.argsort(d, kind="stable")[:k]]

    def aliases(self, name: str, rms: float = 0.02) -> set[str]:
        """Names whose icon looks the same as `name`'s (RMS colour difference < `rms` on white).

        OpenMoji has look-alikes (norway / svalbard & jan mayen, full moon / yellow circle) that
        no judge can tell apart; a retrieval of an alias counts as correct.
        """
        if self._aliases is None:
            first = np.flatnonzero(np.r_[True, self._owner[1:] != self._owner[:-1]])  # unrotated copy
            white = self._p[first] + np.repeat(1 - self._a[first], 3, axis=1)  # on a white background
            sq = (white**2).sum(1)
            d2 = np.maximum(sq[:, None] + sq[None] - 2 * white @ white.T, 0) / white.shape[1]
            close = np.sqrt(d2) < rms
            self._aliases = {
                n: {self.names[j] for j in np.flatnonzero(close[i])} for i, n in enumerate(self.names)
            }
        return self._aliases[name]

    def is_match(self, retrieved: str, truth: str) -> bool:
        return retrieved == truth or retrieved in self.aliases(truth)


def check_compose(image, slots, ref_names: list[str], index: IconIndex, distractors=()) -> list[bool]:
    """Per slot: is the crop's nearest icon (among the refs and distractors) the one placed there?

    `slots` is meta["slots"] of a compose sample: (reference index, (x0, y0, x1, y1)) per slot;
    `index` is a "center"-framed IconIndex (a slot holds the icon's whole canvas).
    """
    x = as_array(image)
    among = list(ref_names) + [d for d in distractors if d not in ref_names]
    ok = []
    for r, (x0, y0, x1, y1) in slots:
        ok.append(index.is_match(index.rank(x[y0:y1, x0:x1], k=1, among=among)[0], ref_names[r]))
    return ok


def check_storyboard(panels, character: str, index: IconIndex, among=None, k: int = 1) -> list[bool]:
    """Per panel: is the character among the `k` nearest icons (on the panel's own background
    colour)? k = 1: the panel's nearest icon is the character.

    Build `index` with framing="crop" and `angles` covering the panels' tilt (e.g. -10..10 step 5).
    """
    return [any(index.is_match(r, character) for r in index.rank(p, k=k, among=among)) for p in panels]


def storyboard_identity_kept(panels, index: IconIndex, among=None) -> tuple[bool, list[str]]:
    """Do all panels show the same character, whichever it is? Each panel's nearest icon (the
    same retrieval as `check_storyboard`) must match the first panel's, look-alikes included.

    This measures consistency alone: a model that draws the wrong icon in every panel, the same
    one each time, keeps its identity. `check_storyboard` judges whether it is the named one.
    Returns (kept, each panel's nearest icon name)."""
    top = [index.rank(p, k=1, among=among)[0] for p in panels]
    return all(index.is_match(t, top[0]) for t in top[1:]), top


def storyboard_scene(panel, scene: dict) -> tuple[bool, bool]:
    """Does a panel follow its scene words? (background right, character where asked).

    `scene`: one of a storyboard sample's meta["panels"] (background, position, size, angle).
    The background is the border colour's nearest name; the character is every pixel more than
    60 from the border colour (the panel's own background, right or wrong), and its centroid
    must lie within 16 px (at 128 px; scaled with the panel) of the centre of the box
    `tasks.panel_box` gives the scene: the nearest other position's box centre is at least 30 px
    away. Without this, a storyboard that repeats one picture keeps its identity perfectly."""
    from seedling.model.data.tasks import SIZE, panel_box

    x = as_array(panel)
    side = x.shape[0]
    ground = border_color(x)
    background_ok = _nearest_name(ground, kn.BACKGROUNDS) == scene["background"]
    ink = np.linalg.norm(x.astype(np.float32) - ground, axis=-1) > 60  # off the panel's own background
    if ink.sum() < 20 * (side / SIZE) ** 2:
        return background_ok, False
    k = side / SIZE
    x0, y0, x1, y1 = panel_box(scene)  # the 128 px geometry, scaled
    cy, cx = np.argwhere(ink).mean(axis=0)
    position_ok = bool(np.hypot(cy - k * (y0 + y1) / 2, cx - k * (x0 + x1) / 2) < 16 * k)
    return background_ok, position_ok


# --------------------------------------------------------------------------------------------
# Preservation
# --------------------------------------------------------------------------------------------


def psnr(a, b, region_mask: np.ndarray | None = None) -> float:
    """PSNR in dB between two uint8 images over the pixels where `region_mask` is True (all if None).

    Identical pixels give +inf. For "PSNR outside the edit" pass `~meta["region"]`.
    """
    x, y = as_array(a).astype(np.float64), as_array(b).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    if region_mask is not None:
        region_mask = np.asarray(region_mask, bool)
        if region_mask.shape != x.shape[:2]:
            raise ValueError(f"mask shape {region_mask.shape} does not match image {x.shape[:2]}")
        if not region_mask.any():
            raise ValueError("the region mask selects no pixels")
        x, y = x[region_mask], y[region_mask]
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
