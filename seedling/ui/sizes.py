"""The picture sizes the loaded model draws, from its folder's configs (no torch).

The model was trained at one scale: `default_size` in pipeline.json (128 px for the shipped
model), on its size grid (`size_grid_of`: autoencoder factor x DiT patch). A larger picture is
not drawn larger: the model tiles it (at 256 px one circle becomes four), so the tabs offer that
scale at a few aspect ratios, the long side rounded to the grid, and refuse any other size with a
sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seedling.model.task_table import check_size, native_size_of, size_grid_of

ASPECTS = {
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "16:9": (16, 9),
    "9:16": (9, 16),
}
FALLBACK_SIDE = 128  # a pipeline.json that cannot be read (a missing one or key: native_size_of's 128)
FALLBACK_GRID = 16


@dataclass(frozen=True)
class ModelSizes:
    side: int  # the scale the model was trained at: the short side of every offered size
    grid: int
    sizes: dict[str, tuple[int, int]]  # aspect label -> (width, height)

    def label(self, width, height) -> str | None:
        return next((name for name, size in self.sizes.items() if size == (width, height)), None)

    def listed(self) -> str:
        return ", ".join(f"{w}x{h}" for w, h in self.sizes.values())

    def refusal(self, width, height, what: str = "The size") -> str | None:
        """None when the model draws (width, height); otherwise the sentence a person reads."""
        try:
            check_size(height, width, self.grid)
        except ValueError as err:
            return f"{what} is not usable: {err}."
        if (width, height) in self.sizes.values():
            return None
        return (
            f"{what} {width}x{height} is not one this model draws: it was trained at {self.side} px, and "
            f"at another scale it tiles the picture instead of drawing it larger. Use one of: {self.listed()}."
        )


def model_sizes(model_path: str | Path) -> ModelSizes:
    folder = Path(model_path)
    try:
        side = native_size_of(folder)
    except (OSError, ValueError):
        side = FALLBACK_SIDE
    try:
        grid = size_grid_of(folder)
    except (OSError, ValueError, KeyError):
        grid = FALLBACK_GRID
    sizes = {}
    for name, (w, h) in ASPECTS.items():
        short = min(w, h)
        long_side = max(grid, round(side * max(w, h) / short / grid) * grid)
        sizes[name] = (long_side, side) if w >= h else (side, long_side)
    return ModelSizes(side, grid, sizes)
