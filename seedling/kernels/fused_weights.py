"""The weights the fused C++ blocks (kernels/fused.py) take from a UnifiedDiT, and when a model
qualifies for them at all.

A block qualifies when it is exactly the math the C++ block computes: its four linears fp32
`PackedLinear` layers with biases (the pipeline's CPU default), the norms and the tanh GELU the
ones model/dit.py builds, nothing hooked (a fused call would skip a hook). Its ten tensors are
resolved once and remembered, beside the block (kernels/derived.py), while nothing they depend on
changed: the same submodules and parameter objects, their classes, no hooks, no in-place edit
(version counters). Checking that is far cheaper than resolving afresh at every step.
"""

from __future__ import annotations

import torch
from torch import nn

from seedling.kernels import fused
from seedling.kernels.derived import derived
from seedling.kernels.packed import PackedLinear, has_hooks
from seedling.model.dit import DiTBlock, RMSNorm, UnifiedDiT

_KEY = "fused_weights"
# the parameters a block's resolved weights are made of, as (submodule path, attribute)
_PARAMS = (("qkv", "weight"), ("qkv", "bias"), ("proj", "weight"), ("proj", "bias"), ("mlp.0", "weight"),
           ("mlp.0", "bias"), ("mlp.2", "weight"), ("mlp.2", "bias"), ("q_norm", "weight"), ("k_norm", "weight"))


def _resolve(blk: DiTBlock) -> list[torch.Tensor] | None:
    """The ten tensors the C++ block takes, or None where this block must run in Python."""
    fc1, act, fc2 = blk.mlp
    lins = (blk.qkv, blk.proj, fc1, fc2)
    if (
        any(type(lin) is not PackedLinear or lin.bias is None or lin.weight.dtype != torch.float32 for lin in lins)
        or any(has_hooks(m) for m in (blk, blk.mlp, act, blk.norm1, blk.norm2, blk.q_norm, blk.k_norm, *lins))
        or type(act) is not nn.GELU or act.approximate != "tanh"
        or any(type(n) is not nn.LayerNorm or n.elementwise_affine or n.eps != blk.norm1.eps
               for n in (blk.norm1, blk.norm2))
        or any(type(n) is not RMSNorm or n.weight.dtype != torch.float32 or n.eps != blk.q_norm.eps
               for n in (blk.q_norm, blk.k_norm))
    ):
        return None
    panels = [fused.panel_weight(lin) for lin in lins]
    if any(p is None for p in panels):
        return None
    return [panels[0], blk.qkv.bias.detach(), blk.q_norm.weight.detach(), blk.k_norm.weight.detach(),
            panels[1], blk.proj.bias.detach(), panels[2], fc1.bias.detach(), panels[3], fc2.bias.detach()]


def _still_valid(blk: DiTBlock, modules, params, versions) -> bool:
    return (
        not has_hooks(blk)
        and all(parent._modules.get(name) is m and type(m) is tp and not has_hooks(m) for parent, name, m, tp in modules)
        and all(owner._parameters.get(attr) is p and p._version == v for (owner, attr, p), v in zip(params, versions))
    )


def block_weights(blk: DiTBlock) -> list[torch.Tensor] | None:
    """`_resolve(blk)`, remembered between calls while nothing it depends on changed."""
    cache = derived(blk)
    cached = cache.get(_KEY)
    if cached is not None and _still_valid(blk, *cached[:3]):
        return cached[3]
    cache.pop(_KEY, None)
    weights = _resolve(blk)
    if weights is not None:
        modules = [(blk, n, m, type(m)) for n, m in blk._modules.items()]
        modules += [(blk.mlp, n, m, type(m)) for n, m in blk.mlp._modules.items()]
        owners = [(blk.get_submodule(path), attr) for path, attr in _PARAMS]
        params = [(o, a, o._parameters[a]) for o, a in owners]
        cache[_KEY] = (modules, params, [p._version for _, _, p in params], weights)
    return weights


def model_weights(dit: UnifiedDiT, x: torch.Tensor) -> list[torch.Tensor] | None:
    """Every block's weights for the C++ blocks, concatenated, or None where the Python blocks
    must run: gradients enabled, not fp32 on the CPU, autocast, fused blocks off or unbuildable,
    or a block that is not plain packed fp32 (quantized, hooked, unpacked)."""
    if (torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu"
            or torch.is_autocast_enabled("cpu") or not fused.enabled()):
        return None
    weights = []
    first = dit.blocks[0]
    for blk in dit.blocks:
        w = block_weights(blk)
        if w is None or blk.norm1.eps != first.norm1.eps or blk.q_norm.eps != first.q_norm.eps:
            return None
        weights += w
    return weights if fused.available() else None


def run_blocks(dit: UnifiedDiT, x, table, table_ctx, n_ctx, weights, cos, sin, kbufs, vbufs, mode):
    """All blocks as one C++ call (fused.dit_blocks; its modes are described there)."""
    blk = dit.blocks[0]
    return fused.dit_blocks(x, table, table_ctx, n_ctx, weights, cos, sin, kbufs, vbufs, mode,
                            blk.norm1.eps, blk.q_norm.eps)
