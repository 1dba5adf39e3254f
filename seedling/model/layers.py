"""The DiT's small building blocks (model/dit.py assembles them): the timestep embedder,
patchify / unpatchify, RMS norm and adaLN modulation."""

from __future__ import annotations

import math

import torch
from torch import nn


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------
class TimestepEmbedder(nn.Module):
    """Scalar in [0, 1] -> (B, D) via sinusoidal features and an MLP (DiT's recipe)."""

    def __init__(self, width: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * 1000.0)[:, None] * freqs[None]  # (B, half)
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=-1).to(dtype))


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, (H/p)*(W/p), C*p*p), raster order."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def unpatchify(x: torch.Tensor, p: int, C: int, h: int, w: int) -> torch.Tensor:
    """(B, h*w, C*p*p) -> (B, C, h*p, w*p)."""
    B = x.shape[0]
    x = x.reshape(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, C, h * p, w * p)


# --------------------------------------------------------------------------------------------
# Norm and adaLN modulation
# --------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def modulate1p(x: torch.Tensor, shift: torch.Tensor, scale1p: torch.Tensor) -> torch.Tensor:
    """`modulate` with the +1 already in the scale: shift + x * (1 + scale) as one addcmul kernel."""
    return torch.addcmul(shift, x, scale1p)


# Which of a block's six adaLN chunks (shift, scale, gate for attention, then for the MLP) are
# scales, applied as 1 + scale.
SCALE_CHUNKS = (1, 4)
