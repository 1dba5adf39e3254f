"""Control inputs from any image, by deterministic preprocessing (the seeds' "every image yields
data for every task"): edges, sketch, grayscale and low resolution.

Each `*_control` maps an (H, W, 3) uint8 image to an (H, W, 3) uint8 control image of the same
size, so the control can sit at the output's own token positions:

- edges: a Canny-style edge map (Gaussian blur, Sobel gradient, non-maximum suppression, double
  threshold with hysteresis), white 1 px edges on black, as ControlNet's canny input.
- sketch: soft dark strokes on white where the luminance changes, their weight following the
  gradient's strength, the way a quick pencil outline looks; no thinning, so lines keep width.
- grayscale: the luminance in all three channels (for colourise).
- low resolution: area-averaged down by 2 or 4, then bicubic back up (for upscale); the small
  image itself is `downsample`.

numpy and Pillow only, no randomness: the same image always gives the same control.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# ITU-R BT.601 luma, as Pillow's "L" conversion and styles.gray.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _check(image: np.ndarray) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[2] != 3 or x.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {x.shape} {x.dtype}")
    return x


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 255]."""
    return _check(image).astype(np.float32) @ LUMA


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian of a (H, W) float array, edges extended by reflection."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    p = np.pad(x, r, mode="reflect")
    rows = sum(k[i] * p[:, i : i + x.shape[1]] for i in range(2 * r + 1))  # (H + 2r, W)
    return sum(k[i] * rows[i : i + x.shape[0]] for i in range(2 * r + 1))  # (H, W)


def sobel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gx, gy) of a (H, W) float array, scaled to grey levels per pixel (a ramp of slope s
    gives s)."""
    p = np.pad(x, 1, mode="edge")
    dx = p[:, 2:] - p[:, :-2]  # (H + 2, W)
    dy = p[2:, :] - p[:-2, :]  # (H, W + 2)
    gx = (dx[:-2] + 2 * dx[1:-1] + dx[2:]) / 8
    gy = (dy[:, :-2] + 2 * dy[:, 1:-1] + dy[:, 2:]) / 8
    return gx, gy


def _non_max_suppression(mag: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Keep pixels at least as strong as both neighbours across the edge (direction in 4 bins)."""
    angle = (np.degrees(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = ((angle + 22.5) // 45).astype(int) % 4  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135
    p = np.pad(mag, 1)
    h, w = mag.shape

    def at(dy, dx):
        return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    # (dy, dx) of the neighbour along the gradient, in image rows (y grows downwards).
    steps = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    keep = np.zeros_like(mag, bool)
    for s, (dy, dx) in steps.items():
        peak = (mag >= at(dy, dx)) & (mag >= at(-dy, -dx))
        keep |= (sector == s) & peak
    return keep


def _dilate(mask: np.ndarray, size: int = 3) -> np.ndarray:
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(im.filter(ImageFilter.MaxFilter(size))) > 0


def canny(image: np.ndarray, sigma: float = 1.0, low: float = 6.0, high: float = 15.0) -> np.ndarray:
    """(H, W) bool edge map. `low`/`high` are gradient strengths in grey levels per pixel after
    the blur: a sharp black-white step peaks near 255 / (sqrt(2 pi) sigma) ~ 100 at sigma 1; a
    step of 40 grey levels still passes `high`."""
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got low={low}, high={high}")
    gx, gy = sobel(gaussian_blur(luminance(image), sigma))
    mag = np.hypot(gx, gy)
    thin = _non_max_suppression(mag, gx, gy) & (mag >= low)
    strong = thin & (mag >= high)
    # Hysteresis: weak edge pixels survive when 8-connected to a strong one.
    edges = strong
    while True:
        grown = _dilate(edges) & thin
        if np.array_equal(grown, edges):
            return edges
        edges = grown


def edges_control(image: np.ndarray) -> np.ndarray:
    """White edges on black, (H, W, 3) uint8."""
    e = canny(image)
    return np.repeat(np.where(e, 255, 0).astype(np.uint8)[..., None], 3, axis=2)


def sketch_control(image: np.ndarray, sigma: float = 1.0, full: float = 24.0) -> np.ndarray:
    """Dark strokes on white, (H, W, 3) uint8: ink = gradient strength / `full`, capped at 1
    (a gradient of `full` grey levels per pixel or more is black); changes under a fifth of
    `full` leave no ink, so flat shading stays white."""
    gx, gy = sobel(gaussian_blur(luminance(image), sigma))
    ink = np.clip(np.hypot(gx, gy) / full, 0.0, 1.0)
    ink[ink < 0.2] = 0.0
    out = np.round(255 * (1 - ink)).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


def grayscale_control(image: np.ndarray) -> np.ndarray:
    """The luminance in three channels, (H, W, 3) uint8."""
    g = np.round(luminance(image)).clip(0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Area average over `factor` x `factor` blocks: (H / f, W / f, 3) uint8."""
    x = _check(image)
    h, w = x.shape[:2]
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"{w}x{h} does not divide by the factor {factor}")
    return np.asarray(Image.fromarray(x).resize((w // factor, h // factor), Image.BOX))


def upsample_bicubic(small: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize to (width, height) = `size`: also the baseline an upscaler must beat."""
    return np.asarray(Image.fromarray(_check(small)).resize(size, Image.BICUBIC))


def low_resolution_control(image: np.ndarray, factor: int) -> np.ndarray:
    """`downsample` by `factor`, bicubic back to the image's size: (H, W, 3) uint8."""
    h, w = _check(image).shape[:2]
    return upsample_bicubic(downsample(image, factor), (w, h))


CONTROLS = {
    "edges": edges_control,
    "sketch": sketch_control,
    "colourise": grayscale_control,
    "upscale_2x": lambda im: low_resolution_control(im, 2),
    "upscale_4x": lambda im: low_resolution_control(im, 4),
}


def control_at(kind: str, image: np.ndarray, scale: int = 1) -> np.ndarray:
    """`CONTROLS[kind](image)` for a picture drawn at `scale` times the 128 px geometry: a
    sketch's blur widens and its strength threshold falls by that factor, so its strokes keep
    their width relative to the picture. Edges stay 1 px (Canny at the picture's own resolution,
    as ControlNet's edge maps are); the others do not depend on the scale."""
    if kind == "sketch" and scale != 1:
        return sketch_control(image, sigma=float(scale), full=24.0 / scale)
    return CONTROLS[kind](image)


def model_view(task: str, image: np.ndarray) -> np.ndarray:
    """The picture a control task's model is given for its control, (H, W, 3) uint8: an edge map
    (white lines on black, ControlNet's convention, which is what users give and what
    `edges_control` draws) enters inverted, dark lines on white; every other control as it is.

    Why: the autoencoder learnt pictures on white. A 1 px white-on-black edge map of an icon comes
    back from its round trip with line F1 0.16 (0.37 within 1 px); the same lines dark on white
    come back with 0.76 (0.95 within 1 px), measured on 40 icons (bench/bench_control_roundtrip.py;
    docs/data.md, "Edges"). Training
    (`train_data.stack_samples`) and sampling (`pipeline.control_input`) both call this."""
    x = _check(image)
    return 255 - x if task == "edges" else x


def _gray(x: np.ndarray, tolerance: int = 12) -> bool:
    """Nearly every pixel (99%) has its three channels within `tolerance` of each other."""
    spread = x.max(axis=2).astype(np.int16) - x.min(axis=2)
    return float((spread <= tolerance).mean()) >= 0.99


def is_control(kind: str, image: np.ndarray) -> bool:
    """Whether `image` already is a `kind` control, as against an ordinary picture to trace it
    from. "edges": gray, three quarters or more dark (light lines on black). "sketch": gray, 30% or
    more near white, and its dark pixels lines rather than filled areas (under 60% of them survive
    a 5x5 erosion; a gray line drawing passes, a gray icon with solid dark parts is traced). The
    sketches of 300 icons all pass; colour icons never do. Colourise and upscale take any picture."""
    x = _check(image)
    if kind not in ("edges", "sketch"):
        return True
    if not _gray(x):
        return False
    lum = luminance(x)
    if kind == "edges":
        return float((lum < 48).mean()) >= 0.75
    dark = lum < 128
    solid = np.asarray(Image.fromarray(dark.astype(np.uint8) * 255).filter(ImageFilter.MinFilter(5))) > 0
    return float((lum > 224).mean()) >= 0.3 and solid.sum() < 0.6 * max(dark.sum(), 1)


def as_control(kind: str, image: np.ndarray) -> tuple[np.ndarray, bool]:
    """(`kind`'s control from `image`, traced): an edges or sketch control passes as it is; any
    other picture is traced (`edges_control`, `sketch_control`), as the training controls were,
    and `traced` says so. Colourise: the gray picture (`grayscale_control`), traced = False."""
    x = _check(image)
    if kind == "colourise":
        return grayscale_control(x), False
    if kind not in ("edges", "sketch"):
        raise ValueError(f"no control kind {kind!r}; use 'edges', 'sketch' or 'colourise'")
    if is_control(kind, x):
        return x, False
    return (edges_control if kind == "edges" else sketch_control)(x), True
