"""The int8 grid every int8 layer of kernels/quant*.py shares: symmetric, per output row."""

from __future__ import annotations

import torch


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: weight (N, K) -> (q (N, K) int8 in [-127, 127], scale (N,) fp32).

    weight ≈ q * scale[:, None]. -128 is left out so that the grid is symmetric around 0.
    """
    w = weight.detach().float()
    # clamp: an all-zero row would give 0/0; any positive scale maps it to zeros.
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale
