"""Factored 3D rotary position embedding over (image index, row, column).

Each attention head's dimension is split into three parts, one per axis; each part rotates its
pairs of channels by angles proportional to that axis' coordinate. Because rotations compose,
<R(p) q, R(p') k> = <q, R(p' - p) k>: attention scores depend on positions only through their
differences (tested). By default rows and columns are each image's own grid, so a reference and an
output share spatial coordinates and only the image-index axis tells them apart; `box_positions`
instead places a reference's grid inside a box of the output's (layout-aware composition).
"""

from __future__ import annotations

import torch


def image_positions(index: int, rows: int, cols: int, device=None) -> torch.Tensor:
    """(rows*cols, 3) float positions (index, row, col) in raster order."""
    r = torch.arange(rows, device=device, dtype=torch.float32)
    c = torch.arange(cols, device=device, dtype=torch.float32)
    rr, cc = torch.meshgrid(r, c, indexing="ij")
    ii = torch.full_like(rr, float(index))
    return torch.stack([ii, rr, cc], dim=-1).reshape(-1, 3)


def box_positions(index: int, rows: int, cols: int, box, out_rows: int, out_cols: int,
                  device=None) -> torch.Tensor:
    """(rows*cols, 3) positions that place a reference's token grid inside `box` of the output.

    `box` is (x0, y0, x1, y1) as fractions of the output (0..1). Token centres are mapped onto the
    box's span of the output's token grid, so positions are scaled and fractional: a reference
    meant for the left half sits at the columns of the output's left half, whatever its own size.
    The full-frame box on a reference of the output's size gives `image_positions` exactly, so
    edit, inpaint and style are unchanged by it.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ValueError(
            f"a reference box is (x0, y0, x1, y1) with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
            f"as fractions of the output; got {tuple(box)}"
        )
    r = (torch.arange(rows, device=device, dtype=torch.float32) + 0.5) * ((y1 - y0) * out_rows / rows)
    c = (torch.arange(cols, device=device, dtype=torch.float32) + 0.5) * ((x1 - x0) * out_cols / cols)
    rr, cc = torch.meshgrid(r + y0 * out_rows - 0.5, c + x0 * out_cols - 0.5, indexing="ij")
    ii = torch.full_like(rr, float(index))
    return torch.stack([ii, rr, cc], dim=-1).reshape(-1, 3)


def reference_positions(offset: int, boxes, rows: int, cols: int) -> list | None:
    """For references resized to the output's (rows, cols) token grid: reference j's image index
    (offset + j) where its box is None, else its positions inside the box. None without boxes."""
    if boxes is None:
        return None
    return [offset + j if box is None else box_positions(offset + j, rows, cols, box, rows, cols)
            for j, box in enumerate(boxes)]


def text_positions(length: int, device=None) -> torch.Tensor:
    """Text tokens all sit at the origin (as in FLUX): MiniLM states already encode word order."""
    return torch.zeros(length, 3, device=device)


class Rope3D(torch.nn.Module):
    """Computes (cos, sin) tables of shape (L, head_dim/2) for given (L, 3) positions."""

    def __init__(self, axes_dim: tuple[int, int, int], theta: float = 10000.0):
        super().__init__()
        if any(d % 2 for d in axes_dim):
            raise ValueError(f"every RoPE axis needs an even number of channels, got {axes_dim}")
        self.axes_dim = tuple(axes_dim)
        for a, d in enumerate(axes_dim):
            freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
            self.register_buffer(f"freqs{a}", freqs.float(), persistent=False)

    def forward(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = torch.cat(
            [pos[:, a, None].float() * getattr(self, f"freqs{a}")[None, :] for a in range(3)], dim=-1
        )  # (L, head_dim/2)
        return angles.cos(), angles.sin()

    def complex(self, pos: torch.Tensor) -> torch.Tensor:
        """The same rotations as one complex table (L, head_dim/2): cos + i sin."""
        cos, sin = self(pos)
        return torch.complex(cos, sin)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1). x: (B, H, L, Dh); cos/sin: (L, Dh/2)."""
    x2 = x.float().reshape(*x.shape[:-1], -1, 2)  # (B, H, L, Dh/2, 2)
    x0, x1 = x2[..., 0], x2[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


def apply_rope_complex(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """`apply_rope` as a single complex multiply (fewer kernels: the per-step cost of small token
    counts is mostly kernel launches). x: (..., L, Dh); freqs: (L, Dh/2) complex."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(xc * freqs).flatten(-2).type_as(x)
