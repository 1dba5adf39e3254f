"""Pre-packed fp32 linear layers for CPU inference (oneDNN).

`torch.nn.functional.linear` on an fp32 CPU tensor calls MKL's sgemm, which re-packs the weight
on every call and, on AMD CPUs, runs a generic code path. oneDNN (`torch.ops.mkldnn`) can
reorder a weight once into its blocked layout and then run each product with its own AVX-512
kernels, with fp32 results equal to `F.linear` up to summation order. At the DiT's small
shapes that is much faster per layer (docs/acceleration.md, "Pre-packed fp32 linears";
`bench/bench_cache.py --linear` shows the whole-generation effect). PyTorch's own Inductor does
the same weight prepacking when it freezes a CPU model; this does it in eager mode.

`pack_linears(model)` turns every `nn.Linear` of `model` into a `PackedLinear` in place (the
same module object, its class swapped: parameters, state_dict keys, hooks and sharing are
untouched). A `PackedLinear` is an `nn.Linear` in every respect except its forward, which takes
the packed path only when all of these hold and otherwise is exactly `nn.Linear.forward`:
  - the input and weight are fp32 CPU tensors and oneDNN is available;
  - no gradient is needed (torch.no_grad / inference_mode, or nothing requires grad);
  - CPU autocast is off (under autocast the layer must run in the autocast dtype).
The packed weight is rebuilt whenever the weight changes: it is keyed on the parameter object,
its storage and its version counter, so in-place edits (`p.add_`, `p.copy_`, load_state_dict),
`.to()` and replacing the parameter all invalidate it. Only edits through `.data`, which
bypass the version counter, go unseen: call `refresh_packed(model)` after those.

`unpack_linears(model)` turns them back into plain `nn.Linear`. `linear_gelu(linear, x)` runs a
linear and its GELU as one oneDNN call where the linear is packed (the DiT's MLP uses it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seedling.kernels.derived import PANELS_ATTR, forget, version_key

# oneDNN's reorder takes the expected number of rows as a hint for its blocking; the DiT's
# per-step products have 64-352 rows.
_ROWS_HINT = 128


def packing_available() -> bool:
    """oneDNN's linear ops exist in this torch build."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class PackedLinear(nn.Linear):
    """`nn.Linear` whose fp32 CPU inference forward uses a once-packed oneDNN weight."""

    _packed: torch.Tensor | None
    _packed_key: tuple | None

    def packed_weight(self) -> torch.Tensor:
        key = version_key(self.weight)
        if getattr(self, "_packed_key", None) != key:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), _ROWS_HINT)
            self._packed_key = key
        return self._packed

    def uses_packed(self, x: torch.Tensor) -> bool:
        w = self.weight
        return (
            x.dtype == torch.float32
            and w.dtype == torch.float32
            and x.device.type == "cpu"
            and w.device.type == "cpu"
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
            and not torch.is_autocast_enabled("cpu")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_packed(x):
            return F.linear(x, self.weight, self.bias)
        return self.packed_forward(x)

    def packed_forward(self, x: torch.Tensor, post_op: str = "none", algorithm: str = "") -> torch.Tensor:
        """The oneDNN product with an optional fused pointwise op (e.g. "gelu", "tanh"); callers
        check `uses_packed(x)` first."""
        b = self.bias.detach() if self.bias is not None else None
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight(), b, post_op, [], algorithm)

    def __getstate__(self):
        # copy.deepcopy / pickle: the packed tensor (oneDNN layout, no plain storage) is a cache
        state = self.__dict__.copy()
        state["_packed"] = state["_packed_key"] = None
        state.pop(PANELS_ATTR, None)  # kernels/fused.py's panel copy: a cache too
        return state

    def drop_packed(self) -> None:
        self._packed = None
        self._packed_key = None
        self.__dict__.pop(PANELS_ATTR, None)


def linear_gelu(linear: nn.Module, x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """`F.gelu(linear(x), approximate)`, as one fused call where the layer has one: a PackedLinear
    on its packed path (oneDNN fp32) or any layer with a `forward_gelu(x, approximate)` method
    (kernels/quant.PackedW8A8Linear, oneDNN int8); never on a layer with hooks, which a fused call
    would skip. Otherwise exactly those two calls. The fused GELU saves a pass over the MLP's
    4x-wide hidden activations."""
    if not has_hooks(linear):
        if type(linear) is PackedLinear:
            if linear.uses_packed(x):
                return linear.packed_forward(x, "gelu", approximate)
        elif (fused := getattr(linear, "forward_gelu", None)) is not None:
            return fused(x, approximate)
    return F.gelu(linear(x), approximate=approximate)


def has_hooks(module: nn.Module) -> bool:
    """Forward hooks a fused or batched call that bypasses `module(...)` would skip."""
    return bool(module._forward_hooks or module._forward_pre_hooks)


def is_linear(module: nn.Module) -> bool:
    """A plain full-precision linear: exactly `nn.Linear` or a `PackedLinear` (not other
    subclasses, whose owners may read `.weight` directly)."""
    return type(module) in (nn.Linear, PackedLinear)


def pack_linears(model: nn.Module) -> int:
    """Make every plain `nn.Linear` in `model` a `PackedLinear` (in place). Returns how many
    layers are packed afterwards. A no-op where oneDNN is unavailable (returns 0)."""
    if not packing_available():
        return 0
    n = 0
    for m in model.modules():
        if type(m) is nn.Linear:
            m.__class__ = PackedLinear
            m.drop_packed()
        if type(m) is PackedLinear:
            n += 1
    return n


def unpack_linears(model: nn.Module) -> int:
    """Turn every `PackedLinear` back into a plain `nn.Linear`. Returns how many changed."""
    n = 0
    for m in model.modules():
        if type(m) is PackedLinear:
            m.drop_packed()
            del m._packed, m._packed_key
            m.__class__ = nn.Linear
            n += 1
    return n


# how fp32 linears multiply on CPU (SeedlingPipeline.set_linear_kernel)
LINEAR_KERNELS = ("packed", "plain")


def set_linear_kernel(model: nn.Module, kind: str) -> str:
    """Make `model`'s full-precision linears "packed" (oneDNN, each weight reordered once; the
    same fp32 results as `F.linear` up to summation order) or "plain" (`F.linear`). Other
    devices, dtypes and anything that needs gradients always take the plain path. Returns the
    kernel now in use: where this torch build has no oneDNN, "packed" stays "plain"."""
    if kind not in LINEAR_KERNELS:
        raise ValueError(f"unknown linear kernel {kind!r}; choose one of: {', '.join(LINEAR_KERNELS)}")
    if kind == "packed":
        return "packed" if pack_linears(model) else "plain"
    unpack_linears(model)
    return "plain"


def refresh_packed(model: nn.Module) -> None:
    """Forget every packed weight (they are rebuilt on the next forward), and the executor's
    caches built from the model's weights (kernels/derived.py: resolved fused-block weights,
    stacked modulation weights)."""
    for m in model.modules():
        if type(m) is PackedLinear:
            m.drop_packed()
        forget(m)


def count_packed(model: nn.Module) -> int:
    return sum(type(m) is PackedLinear for m in model.modules())
