"""Euler sampling of the flow ODE with configurable, non-uniform step schedules and two-scale
guidance (text and image, as in InstructPix2Pix).

Time runs from t = 1 (noise) to t = 0 (data). Schedules return steps+1 times, decreasing:
- "uniform": evenly spaced.
- "shift":   SD3's time shift t' = s t / (1 + (s - 1) t) (s > 1 spends more steps near noise).
- "cosine":  denser at both ends, coarse in the middle.
- a list/tuple of floats: used as is (validated).
A shortcut model is told the step size of each step (d = t_i - t_{i+1}).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


def make_schedule(steps: int, schedule: str | Sequence[float] = "uniform", shift: float = 1.0) -> torch.Tensor:
    if isinstance(schedule, (list, tuple)):
        ts = torch.tensor([float(s) for s in schedule])
        if len(ts) != steps + 1 or ts[0] != 1.0 or ts[-1] != 0.0 or not bool((ts[1:] < ts[:-1]).all()):
            raise ValueError(f"a custom schedule must have steps+1={steps + 1} strictly decreasing times from 1 to 0")
        return ts
    u = torch.linspace(1.0, 0.0, steps + 1)
    if schedule == "uniform":
        return u
    if schedule == "shift":
        return shift * u / (1 + (shift - 1) * u)
    if schedule == "cosine":
        return 0.5 * (1 - torch.cos(math.pi * u))
    raise ValueError(f"unknown schedule {schedule!r}; use 'uniform', 'shift', 'cosine' or a list of times")


@dataclass
class Branch:
    """Guidance branches evaluated in one call. `name` is one branch name, or a tuple of names run
    as one batch: fn then receives x, t, d repeated once per name (name-major) and returns their
    velocities stacked the same way. Batching branches that share a context (the prompt and the
    empty prompt with the same references) reads the weights once per step instead of once per
    branch, which is most of a cached step's cost at 64 tokens."""

    name: str | tuple[str, ...]
    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,) if isinstance(self.name, str) else tuple(self.name)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, d: torch.Tensor) -> dict[str, torch.Tensor]:
        k = len(self.names)
        if k == 1:
            return {self.names[0]: self.fn(x, t, d)}
        v = self.fn(x.repeat(k, *[1] * (x.dim() - 1)), t.repeat(k), d.repeat(k))
        return dict(zip(self.names, v.chunk(k)))


def combine_guidance(v: dict[str, torch.Tensor], guidance: float, image_guidance: float) -> torch.Tensor:
    """v has 'cond' and optionally 'no_text' (refs, empty prompt) and 'none' (no refs, empty prompt).

    With refs:   v = v_none + s_img (v_no_text - v_none) + s_txt (v_cond - v_no_text)
    Without:     v = v_no_text + s_txt (v_cond - v_no_text)
    """
    out = v["cond"]
    if "no_text" in v:
        out = v["no_text"] + guidance * (v["cond"] - v["no_text"])
        if "none" in v:
            out = out + (image_guidance - 1.0) * (v["no_text"] - v["none"])
    return out


def step_pairs(times: torch.Tensor, shortcut: bool = True) -> list[tuple[float, float]]:
    """The (t, d) of every step `euler_sample` runs over `times`: d = t_i - t_{i+1} for a shortcut
    model, else 0. Known before the first step, so a denoiser can be built for all of them."""
    return [(float(times[i]), (float(times[i]) - float(times[i + 1])) if shortcut else 0.0)
            for i in range(len(times) - 1)]


def euler_sample(branches: dict[str, Branch] | list[Branch], x: torch.Tensor, times: torch.Tensor, guidance: float,
                 image_guidance: float, shortcut: bool = True, on_step=None, project=None) -> torch.Tensor:
    """x: (B, M, C, h, w) starting noise at t=1. `project(x, t)` re-imposes known latents (inpaint).
    `on_step(i, total, x, x0_pred)` may raise to cancel."""
    B = x.shape[0]
    total = len(times) - 1
    branches = list(branches.values()) if isinstance(branches, dict) else branches
    steps = step_pairs(times, shortcut)
    for i in range(total):
        t, t_next = float(times[i]), float(times[i + 1])
        tt = torch.full((B,), steps[i][0], device=x.device)
        dd = torch.full((B,), steps[i][1], device=x.device)
        v = {}
        for b in branches:
            v.update(b(x, tt, dd))
        v = combine_guidance(v, guidance, image_guidance)
        x0_pred = x - t * v if on_step is not None else None  # (only the callback reads it)
        x = x - (t - t_next) * v
        if project is not None:
            x = project(x, t_next)
        if on_step is not None:
            on_step(i + 1, total, x, x0_pred)
    return x
