"""Attention backends behind one function, each with its constraints (cf. diffusers'
attention_dispatch).

The unified DiT's sequence is [context (references ; text) ; outputs] with the structured mask
"context never attends to outputs, outputs attend to everything". Three ways to compute it:

- "dense":  one SDPA over the whole sequence with a boolean block mask (the reference path).
- "split":  two unmasked SDPA calls, context->context and outputs->all. Mathematically equal to
            "dense" and cheaper: no mask materialised, no wasted context->output scores. The
            reference K/V cache is the same split with the context K/V computed once.
- "flex":   FlexAttention with a block mask (torch.nn.attention.flex_attention); pays on CUDA
            where it compiles to a fused kernel; on CPU it falls back to "split".

All take q, k, v of shape (B, H, L, Dh) and the number of context tokens `n_ctx`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

_BACKENDS: dict[str, Callable] = {}
_CONSTRAINTS: dict[str, str] = {}


def register(name: str, constraint: str):
    def deco(fn):
        _BACKENDS[name] = fn
        _CONSTRAINTS[name] = constraint
        return fn

    return deco


def available_backends() -> dict[str, str]:
    return dict(_CONSTRAINTS)


def structured_mask(n_ctx: int, n_total: int, device=None) -> torch.Tensor:
    """(L, L) bool, True = may attend. Rows are queries. Context rows see context only."""
    m = torch.ones(n_total, n_total, dtype=torch.bool, device=device)
    m[:n_ctx, n_ctx:] = False
    return m


@register("dense", "any device; materialises an (L, L) mask")
def dense_attention(q, k, v, n_ctx: int):
    mask = structured_mask(n_ctx, q.shape[-2], q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@register("split", "any device; equal to dense up to float rounding")
def split_attention(q, k, v, n_ctx: int):
    if n_ctx == 0:
        return F.scaled_dot_product_attention(q, k, v)
    ctx = F.scaled_dot_product_attention(q[:, :, :n_ctx], k[:, :, :n_ctx], v[:, :, :n_ctx])  # (B,H,Nc,Dh)
    out = F.scaled_dot_product_attention(q[:, :, n_ctx:], k, v)  # (B,H,No,Dh)
    return torch.cat([ctx, out], dim=2)


_flex_cache: dict = {}


@register("flex", "CUDA (compiled FlexAttention); falls back to split elsewhere")
def flex_attention(q, k, v, n_ctx: int):
    if q.device.type != "cuda":
        return split_attention(q, k, v, n_ctx)
    from torch.nn.attention.flex_attention import create_block_mask
    from torch.nn.attention.flex_attention import flex_attention as _flex

    L = q.shape[-2]
    key = (n_ctx, L, q.device)
    if key not in _flex_cache:
        def mask_mod(b, h, q_idx, kv_idx):
            return (q_idx >= n_ctx) | (kv_idx < n_ctx)

        _flex_cache[key] = create_block_mask(mask_mod, None, None, L, L, device=q.device)
        if "compiled" not in _flex_cache:
            _flex_cache["compiled"] = torch.compile(_flex)
    return _flex_cache["compiled"](q, k, v, block_mask=_flex_cache[key])


def attention(q, k, v, n_ctx: int, backend: str = "split"):
    """Structured attention over [context ; outputs]. q, k, v: (B, H, L, Dh) -> (B, H, L, Dh)."""
    try:
        fn = _BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown attention backend {backend!r}; available: {sorted(_BACKENDS)}") from None
    return fn(q, k, v, n_ctx)


def cached_context_attention(q_out, k_ctx, v_ctx, k_out, v_out, kv_buffer=None):
    """Outputs attending to [cached context K/V ; output K/V]. q_out: (B, H, No, Dh).

    kv_buffer: optional (K, V) of shape (B, H, Nc + No, Dh) already holding the context K/V in
    their first Nc positions (ContextCache.kv_buffers): the outputs' K/V are written after them
    in place, instead of concatenating a fresh copy of the whole context each call. Inference
    only (the buffers are overwritten at every step)."""
    if kv_buffer is not None:
        kb, vb = kv_buffer
        n_ctx = kb.shape[2] - k_out.shape[2]
        kb[:, :, n_ctx:].copy_(k_out)
        vb[:, :, n_ctx:].copy_(v_out)
        return F.scaled_dot_product_attention(q_out, kb, vb)
    k = torch.cat([k_ctx, k_out], dim=2) if k_ctx is not None else k_out
    v = torch.cat([v_ctx, v_out], dim=2) if v_ctx is not None else v_out
    return F.scaled_dot_product_attention(q_out, k, v)
