"""Conditioning computed ahead: every block's modulation in one product, and every step of a
generation's schedule at once.

- `modulation_table(dit, c)`: every block's six modulations (B, depth, 6, D) as one SiLU and one
  product against all blocks' adaLN weights stacked (the +1 of the scales folded into the stacked
  bias), instead of depth x (SiLU, linear, chunk, two adds): at a cached step's few tokens those
  small calls are a visible share of the time. The same values as `DiTBlock.modulation` up to
  float rounding.
- `plan_steps(dit, cond, steps)`: a `StepPlan`, what every step of one generation shares, made
  before the first step from the schedule the sampler will run: the timestep MLPs, every block's
  adaLN and the final layer's modulation run once for all steps as one batched product instead
  of once per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seedling.kernels.derived import derived, version_key
from seedling.kernels.fused_weights import model_weights
from seedling.kernels.packed import PackedLinear, has_hooks, is_linear, pack_linears
from seedling.model.dit import SCALE_CHUNKS, UnifiedDiT


@dataclass
class StepConditions:
    """One denoising step's conditioning: c = cond + t_embed(t) + d_embed(d) and what the blocks
    and the final layer make of it."""

    c: torch.Tensor  # (B, D)
    table: torch.Tensor | None  # (B, depth, 6, D) block modulations (modulation_table), or None
    final: tuple[torch.Tensor, torch.Tensor]  # the final layer's shift, scale (B, 1, D)


@dataclass
class StepPlan:
    """What every step of one generation shares, resolved once before the first step: the
    conditioning of each step of the schedule, the context's modulation (t = 0) for the uncached
    path, and the fused blocks' weights (None: the Python blocks). The weights must not change
    while it is in use."""

    steps: dict  # (t values, d values) -> StepConditions
    ctx_table: torch.Tensor | None  # (B, depth, 6, D) context modulations, or None
    weights: list | None  # every block's kernels/fused.py weights, concatenated, or None

    def step(self, t: torch.Tensor, d: torch.Tensor) -> StepConditions | None:
        """The planned conditions of step (t, d), or None (not planned, or gradients are on: the
        plan was made without them)."""
        if torch.is_grad_enabled():
            return None
        return self.steps.get((tuple(t.tolist()), tuple(d.tolist())))


def plan_steps(dit: UnifiedDiT, cond: torch.Tensor, steps, c_ctx: torch.Tensor | None = None,
               weights="resolve") -> StepPlan:
    """The StepPlan of a generation: `cond` (B, D) its task + pooled-text condition, `steps` its
    (t, d) pairs (the values the sampler will pass, every row of a batch the same). `c_ctx`: the
    context's condition, whose modulation the uncached path also needs. `weights`: the fused
    blocks' weights if the caller resolved them already this generation, else resolved here.
    Inference only (built without gradients)."""
    B, S = cond.shape[0], len(steps)
    with torch.no_grad():
        ts = torch.tensor([float(t) for t, _ in steps], device=cond.device).repeat_interleave(B)
        ds = torch.tensor([float(d) for _, d in steps], device=cond.device).repeat_interleave(B)
        c = dit.step_condition(cond.repeat(S, 1), ts, ds)  # (S * B, D): all steps at once
        table = modulation_table(dit, c)
        shift, scale = dit.final.modulation(c)
        planned = {}
        for i in range(S):
            rows = slice(i * B, (i + 1) * B)
            key = (tuple(ts[rows].tolist()), tuple(ds[rows].tolist()))
            planned[key] = StepConditions(c[rows], None if table is None else table[rows], (shift[rows], scale[rows]))
        ctx_table = None if c_ctx is None else modulation_table(dit, c_ctx)
        if table is None:
            weights = None
        elif isinstance(weights, str):
            weights = model_weights(dit, cond)
    return StepPlan(steps=planned, ctx_table=ctx_table, weights=weights)


def table_modulations(table: torch.Tensor) -> list[list[torch.Tensor]]:
    """A modulation table (B, depth, 6, D) as the blocks' per-block lists of six (B, 1, D)."""
    B, depth, _, D = table.shape
    m = table.reshape(B, 1, depth * 6, D).unbind(2)
    return [list(m[6 * i : 6 * i + 6]) for i in range(depth)]


def block_modulations(dit: UnifiedDiT, c: torch.Tensor) -> list[list[torch.Tensor]]:
    """`[blk.modulation(c) for blk in dit.blocks]`, from `modulation_table` where it applies."""
    table = modulation_table(dit, c)
    return [blk.modulation(c) for blk in dit.blocks] if table is None else table_modulations(table)


def modulation_table(dit: UnifiedDiT, c: torch.Tensor) -> torch.Tensor | None:
    """Every block's six modulations (B, depth, 6, D), scales as 1 + scale, or None where the
    blocks must compute their own (gradients, hooked or non-plain adaLN layers)."""
    lins = [blk.adaLN[1] for blk in dit.blocks]
    if (
        (torch.is_grad_enabled() and (c.requires_grad or any(lin.weight.requires_grad for lin in lins)))
        or not all(is_linear(lin) and lin.bias is not None and not has_hooks(lin) for lin in lins)
        or any(type(blk.adaLN[0]) is not nn.SiLU or has_hooks(blk.adaLN) for blk in dit.blocks)
    ):
        return None
    stacked = _stacked_adaLN(dit, lins)
    return stacked(F.silu(c)).view(c.shape[0], len(lins), 6, dit.dims.width)


def _stacked_adaLN(dit: UnifiedDiT, lins) -> nn.Linear:
    """All blocks' adaLN linears as one, rebuilt whenever one of their weights changes (keyed like
    kernels/packed.py) and kept beside the model (kernels/derived.py), never in its state_dict."""
    key = tuple(version_key(p) for lin in lins for p in (lin.weight, lin.bias))
    cache = derived(dit)
    cached = cache.get("adaLN_stack")
    if cached is not None and cached[0] == key:
        return cached[1]
    D = dit.dims.width
    with torch.no_grad():
        w = torch.cat([lin.weight for lin in lins])  # (depth * 6D, D)
        b = torch.stack([lin.bias for lin in lins]).view(len(lins), 6, D).clone()
        b[:, list(SCALE_CHUNKS)] += 1  # 1 + scale, as in DiTBlock.modulation
        stacked = torch.nn.utils.skip_init(nn.Linear, D, w.shape[0], device=w.device, dtype=w.dtype)
        stacked.weight.copy_(w)
        stacked.bias.copy_(b.reshape(-1))
    stacked.requires_grad_(False)
    if any(type(lin) is PackedLinear for lin in lins):
        pack_linears(stacked)
    cache["adaLN_stack"] = (key, stacked)
    return stacked
