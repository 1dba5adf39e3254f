"""Attention behind one entry point, each backend registered with constraints that are checked
(cf. diffusers' attention_dispatch).

The unified DiT's sequence is [context (references ; text) ; outputs] with the structured mask
"context never attends to outputs, outputs attend to everything". Backends:

- "split": two unmasked SDPA calls, context->context and outputs->all. Equal to "dense" up to
  float rounding and cheaper (no mask, no wasted context->output scores). The C++ fused blocks
  (kernels/fused.py) compute exactly this split, so only this backend may run on them.
- "dense": one SDPA over the whole sequence with a boolean (L, L) block mask: the reference.
- "flex":  FlexAttention with a block mask, compiled; CUDA only.
- "sdpa-cached": outputs attending to [cached context K/V ; their own K/V] (no mask needed: the
  context rows are not recomputed). The reference K/V cache's path.

`attention(...)` is the one entry point. With `backend=None` (or "auto") it picks the first
backend whose constraints hold, in the order of AUTO_ORDER; a named backend whose constraints
fail raises ValueError saying which, never a silent fallback. Whether the fused C++ blocks run is
the executor's choice (kernels/executor.py), and it refuses a named backend they do not compute
rather than quietly running something else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MASKS = ("structured", "none")  # the attention patterns the DiT asks for
AUTO_ORDER = ("flex", "split", "dense")


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    fn: Callable
    devices: tuple[str, ...] | None  # device types it runs on; None: any
    dtypes: tuple[torch.dtype, ...] | None  # None: any floating dtype
    masks: tuple[str, ...]  # which of MASKS it computes
    cached: bool  # the cached path: queries are outputs only, keys/values [cached context ; outputs]
    fused_blocks: bool = False  # the C++ fused blocks compute this backend's math (kernels/fused.py)

    def unmet(self, q: torch.Tensor, mask: str, cached: bool) -> str | None:
        """Why this backend cannot run these inputs, or None."""
        if mask not in self.masks:
            return f"it does not compute the {mask!r} mask (only {', '.join(self.masks)})"
        if cached != self.cached:
            return "it is for the cached path" if self.cached else "it is not for the cached path"
        if self.devices is not None and q.device.type not in self.devices:
            return f"it runs on {', '.join(self.devices)}, not {q.device.type}"
        if not q.is_floating_point() or (self.dtypes is not None and q.dtype not in self.dtypes):
            return f"it does not take {q.dtype}"
        return None


_BACKENDS: dict[str, AttentionBackend] = {}


def register(name: str, *, devices=None, dtypes=None, masks=MASKS, cached=False, fused_blocks=False):
    def deco(fn):
        _BACKENDS[name] = AttentionBackend(name, fn, devices, dtypes, tuple(masks), cached, fused_blocks)
        return fn

    return deco


def available_backends() -> dict[str, AttentionBackend]:
    return dict(_BACKENDS)


def get_backend(name: str) -> AttentionBackend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown attention backend {name!r}; available: {sorted(_BACKENDS)}") from None


def choose_backend(q: torch.Tensor, mask: str = "structured", cached: bool = False,
                   backend: str | None = None) -> AttentionBackend:
    """`backend` if its constraints hold (ValueError naming the unmet one otherwise); None or
    "auto": the first of AUTO_ORDER (then any registered) whose constraints hold."""
    if backend not in (None, "auto"):
        chosen = get_backend(backend)
        reason = chosen.unmet(q, mask, cached)
        if reason is not None:
            raise ValueError(f"attention backend {backend!r} cannot run here: {reason}")
        return chosen
    names = [*AUTO_ORDER, *(n for n in _BACKENDS if n not in AUTO_ORDER)]
    for name in names:
        if name in _BACKENDS and _BACKENDS[name].unmet(q, mask, cached) is None:
            return _BACKENDS[name]
    raise ValueError(f"no attention backend runs {q.dtype} on {q.device.type} ({mask}, cached={cached})")


def structured_mask(n_ctx: int, n_total: int, device=None) -> torch.Tensor:
    """(L, L) bool, True = may attend. Rows are queries. Context rows see context only."""
    m = torch.ones(n_total, n_total, dtype=torch.bool, device=device)
    m[:n_ctx, n_ctx:] = False
    return m


@register("dense")
def dense_attention(q, k, v, n_ctx: int):
    mask = structured_mask(n_ctx, q.shape[-2], q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@register("split", fused_blocks=True)
def split_attention(q, k, v, n_ctx: int):
    if n_ctx == 0:
        return F.scaled_dot_product_attention(q, k, v)
    ctx = F.scaled_dot_product_attention(q[:, :, :n_ctx], k[:, :, :n_ctx], v[:, :, :n_ctx])  # (B,H,Nc,Dh)
    out = F.scaled_dot_product_attention(q[:, :, n_ctx:], k, v)  # (B,H,No,Dh)
    return torch.cat([ctx, out], dim=2)


_flex_cache: dict = {}


@register("flex", devices=("cuda",), masks=("structured",))
def flex_attention(q, k, v, n_ctx: int):
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


def attention(q, k, v, n_ctx: int = 0, backend: str | None = None, *, cached: bool = False):
    """The DiT's attention, (B, H, Lq, Dh) -> (B, H, Lq, Dh).

    Uncached: q, k, v cover [context ; outputs] (L = Nc + No), under the structured mask when
    n_ctx > 0. Cached (the reference K/V cache): q holds the output rows only and k, v are
    [context ; outputs]; every output attends to every key, so no mask."""
    mask = "none" if cached or not n_ctx else "structured"
    return choose_backend(q, mask, cached, backend).fn(q, k, v, n_ctx)


@register("sdpa-cached", masks=("none",), cached=True)
def _cached_sdpa(q_out, k, v, n_ctx: int = 0):
    return F.scaled_dot_product_attention(q_out, k, v)
