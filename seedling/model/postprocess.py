"""What the pipeline does to decoded images before returning them: put back the source's detail
where an instruction edit changed nothing, paste a masked edit back into its source, give a
colourised picture its gray input's luminance, and give an upscaled picture its small input's
low frequencies; and the tiles of an upscale larger than the model's native size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from seedling.model.data.controls import LUMA  # BT.601: the luma the colourise control is made with


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


def keep_luminance(gray: np.ndarray, out: np.ndarray) -> np.ndarray:
    """A colourised picture with the gray picture's own shading: every pixel gets `gray`'s luma
    (BT.601) and `out`'s colour around it (out - luma(out), the same hue), that colour scaled down
    only as far as needed to stay inside 0..255 (white stays white, black black). The model
    chooses the colours; the brightness of every pixel stays what the user gave. gray: (H, W) or
    (H, W, 3) and out: (H, W, 3), floats in 0..255."""
    g = np.asarray(gray, np.float32)
    g = g if g.ndim == 2 else g @ LUMA
    out = np.asarray(out, np.float32)
    chroma = out - (out @ LUMA)[..., None]  # its luma is 0: adding it leaves the luma alone
    y = g[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(chroma > 0, (255.0 - y) / chroma, np.where(chroma < 0, y / -chroma, np.inf))
    scale = np.clip(room.min(-1, keepdims=True), 0.0, 1.0)
    return np.clip(y + scale * chroma, 0, 255)


def keep_low_resolution(small: np.ndarray, out: np.ndarray, factor: int, rounds: int = 10) -> np.ndarray:
    """An upscaled picture that, area-averaged down by `factor`, gives back the small picture it
    was made from (iterative back-projection): `rounds` times, the difference between `small` and
    `out` area-averaged down is upsampled (bicubic) and added. The model draws the edges and the
    detail; the small picture, which is all the user gave, fixes every block's mean colour.
    small: (H / factor, W / factor, 3) and out: (H, W, 3), floats in 0..255."""
    x = torch.from_numpy(np.asarray(out, np.float32)).permute(2, 0, 1)[None]
    s = torch.from_numpy(np.asarray(small, np.float32)).permute(2, 0, 1)[None]
    if x.shape[-2] != s.shape[-2] * factor or x.shape[-1] != s.shape[-1] * factor:
        raise ValueError(f"the output {tuple(x.shape[-2:])} is not the small picture {tuple(s.shape[-2:])} "
                         f"times {factor}")
    for _ in range(rounds):
        residual = s - F.avg_pool2d(x, factor)
        x = (x + F.interpolate(residual, size=x.shape[-2:], mode="bicubic", align_corners=False)).clamp(0, 255)
    return x[0].permute(1, 2, 0).numpy()


def tile_starts(length: int, tile: int, overlap: float = 0.25) -> list[int]:
    """Where tiles of side `tile` start along an axis of `length` so that they cover it, each
    overlapping the one before by about `overlap` of a tile, the last one flush with the end."""
    if tile >= length:
        return [0]
    stride = max(1, round(tile * (1 - overlap)))
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def tile_weight(height: int, width: int, ramp: int) -> np.ndarray:
    """(height, width, 1) blending weight of one tile: 1 inside, falling linearly to 1/`ramp` (not
    0: a pixel only one tile covers keeps its value) over `ramp` px at each side, so overlapping
    tiles cross-fade."""
    def axis(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float32)
        return np.minimum(1.0, np.minimum(i + 1, n - i) / max(ramp, 1))

    return (axis(height)[:, None] * axis(width)[None, :])[..., None]
