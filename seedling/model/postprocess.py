"""What the pipeline does to decoded images before returning them: put back the source's detail
where an instruction edit changed nothing, and paste a masked edit back into its source."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def transfer_detail(src: np.ndarray, src_recon: np.ndarray, out: np.ndarray, tolerance: float = 0.25,
                    grow_px: int = 2) -> np.ndarray:
    """An edit's output with the source's fine detail restored wherever the edit changed nothing.

    src: the source picture; src_recon: the autoencoder's round trip of it (what the model "sees");
    out: the edit's decoded output; all (H, W, 3) floats in 0..255. The change map is
    |out - src_recon| averaged over channels, grown by `grow_px` (max filter) and smoothed, so the
    edges of an edited region take none of the old picture. The weight w = 1 - change/(tolerance*255),
    clipped to [0, 1], brings back the reconstruction error: result = out + w * (src - src_recon).
    Where the model reproduced its input exactly (out == src_recon) the result is src exactly; where
    it changed the picture by more than the tolerance the result is the model's output."""
    change = torch.from_numpy(np.abs(out - src_recon).mean(-1, dtype=np.float32))[None, None]
    k = 2 * grow_px + 1
    change = F.avg_pool2d(F.max_pool2d(change, k, 1, grow_px), k, 1, grow_px, count_include_pad=False)
    w = (1 - change[0, 0].numpy() / (tolerance * 255.0)).clip(0, 1)[..., None]
    return np.clip(out + w * (src - src_recon), 0, 255)


def feather_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """(H, W) bool -> float weights in [0, 1] that are exactly 0 outside the mask and ramp to 1
    within `px` pixels inside it, so pasting back keeps every unmasked pixel of the source."""
    m = mask.astype(np.float32)
    if px <= 0:
        return m
    t = torch.from_numpy(m)[None, None]
    k = 2 * px + 1
    blurred = F.avg_pool2d(F.pad(t, (px, px, px, px), mode="replicate"), k, stride=1)[0, 0].numpy()
    return np.where(mask, np.clip(2 * blurred - 1, 0, 1), 0.0).astype(np.float32)
