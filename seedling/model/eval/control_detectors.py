"""Judges for the control tasks (model/data/controls.py): does a generation follow its control?

- edges / sketch: line agreement. The generation goes through the same preprocessing as the
  training image did, and its lines are matched to the control's within a tolerance of a few
  pixels (a line drawn 1-2 px off is still the same line): precision, recall, F1, and the IoU
  of the two line maps thickened by the tolerance.
- colourise: the generation's luminance against the grayscale control (PSNR in dB), and its
  colourfulness (Hasler & Suesstrunk 2003), so that returning the gray input unchanged, which
  matches the luminance perfectly, is still told apart from colouring it.
- upscale: PSNR against the full-resolution truth, minus the PSNR of the bicubic upsampling of
  the same low-resolution input: the dB the model adds over bicubic.

Every judge takes (H, W, 3) uint8 arrays and is exact on ground truth (tests/test_controls.py).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from seedling.model.data import controls as ctl
from seedling.model.eval.detectors import as_array, psnr


def _thicken(mask: np.ndarray, tol: int) -> np.ndarray:
    if tol == 0:
        return mask
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(im.filter(ImageFilter.MaxFilter(2 * tol + 1))) > 0


def line_agreement(found: np.ndarray, want: np.ndarray, tol: int = 2) -> dict[str, float]:
    """Precision, recall, F1 and IoU of two (H, W) bool line maps, `tol` px of slack (Chebyshev).

    Two empty maps agree fully; one empty map against lines scores 0.
    """
    found, want = np.asarray(found, bool), np.asarray(want, bool)
    if found.shape != want.shape:
        raise ValueError(f"line maps differ in shape: {found.shape} vs {want.shape}")
    nf, nw = int(found.sum()), int(want.sum())
    if nf == 0 and nw == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0}
    tf, tw = _thicken(found, tol), _thicken(want, tol)
    precision = float((found & tw).sum() / nf) if nf else 0.0
    recall = float((want & tf).sum() / nw) if nw else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = float((tf & tw).sum() / (tf | tw).sum())
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou}


def edge_agreement(generated, edges_control, tol: int = 2) -> dict[str, float]:
    """Canny edges of the generation against the control's edges (white on black)."""
    want = as_array(edges_control)[..., 0] > 127
    return line_agreement(ctl.canny(as_array(generated)), want, tol)


def sketch_lines(sketch) -> np.ndarray:
    """(H, W) bool: the strokes of a sketch control (dark on white)."""
    return as_array(sketch)[..., 0] < 128


def sketch_agreement(generated, sketch_control, tol: int = 2) -> dict[str, float]:
    """The generation's own sketch strokes against the control's."""
    found = sketch_lines(ctl.sketch_control(as_array(generated)))
    return line_agreement(found, sketch_lines(sketch_control), tol)


def colorfulness(image) -> float:
    """Hasler & Suesstrunk's M3: 0 for any gray image, ~15 for pale colour, ~60+ for vivid."""
    x = as_array(image).astype(np.float64)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def gray_psnr(generated, gray_control) -> float:
    """PSNR in dB of the generation's luminance against the control's (+inf if identical)."""
    g = ctl.grayscale_control(as_array(generated))[..., 0]
    c = as_array(gray_control)[..., 0]
    if g.shape != c.shape:
        raise ValueError(f"images differ in shape: {g.shape} vs {c.shape}")
    mse = float(np.mean((g.astype(np.float64) - c) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def psnr_over_bicubic(generated, small, truth, cap: float = 60.0) -> float:
    """dB by which the generation beats bicubic upsampling of `small` against `truth`
    (each PSNR capped at `cap`, so a perfect result scores a finite gain)."""
    truth = as_array(truth)
    h, w = truth.shape[:2]
    bicubic = ctl.upsample_bicubic(as_array(small), (w, h))
    return min(psnr(generated, truth), cap) - min(psnr(bicubic, truth), cap)
