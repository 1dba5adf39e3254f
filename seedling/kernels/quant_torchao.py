"""int8 linears on torchao (pytorch/ao), the maintained library for PyTorch quantization.

`TorchaoLinear.from_linear(linear, kind)` quantizes an fp `nn.Linear` with torchao's
`quantize_` and one of its configs (`TORCHAO_KINDS`):
  "int8-weight-only"  `Int8WeightOnlyConfig`: int8 weights, per output row, symmetric; the
                      product runs in the activation dtype.
  "int8-dynamic"      `Int8DynamicActivationInt8WeightConfig`: the same weights, activations
                      quantized per token (symmetric int8) on every call, int32 products
                      (`torch._int_mm`).
torchao keeps the layer an `nn.Linear` and swaps its weight for a quantized tensor subclass whose
`F.linear` does the int8 arithmetic. The studio's DiT treats every `nn.Linear` as a plain fp
layer it may pack, fuse or stack (kernels/packed.py, kernels/fused.py), which a quantized weight
cannot take; so the quantized weight lives in `TorchaoLinear`, a module of its own type that
only calls `F.linear`.

torchao is optional: `torchao_available()` says whether it imports, and building a layer without
it raises RuntimeError naming the package.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from torch import nn

TORCHAO_KINDS = ("int8-weight-only", "int8-dynamic")


class _SkipCudaLibraries(logging.Filter):
    """torchao's wheel carries CUDA kernel libraries; on a CPU-only torch each logs a warning at
    import that it cannot be loaded. Those kernels are never used here, so only those lines go."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to load")


@functools.cache
def _torchao():
    """The `torchao.quantization` module, or None where torchao does not import."""
    quiet = not torch.cuda.is_available()
    log = logging.getLogger("torchao")
    noise = _SkipCudaLibraries()
    if quiet:
        log.addFilter(noise)
    try:
        from torchao import quantization
    except ImportError:
        return None
    finally:
        log.removeFilter(noise)
    return quantization


def torchao_available() -> bool:
    """Whether torchao imports in this environment."""
    return _torchao() is not None


def torchao_version() -> str | None:
    if not torchao_available():
        return None
    import torchao

    return torchao.__version__


def _config(kind: str, reduce_range: bool):
    ao = _torchao()
    if ao is None:
        raise RuntimeError(f"torchao {kind!r} layers need the torchao package, which does not import here")
    # set_inductor_config=False: the configs otherwise change torch._inductor's global settings,
    # which only matter under torch.compile and would leak into the rest of the process.
    if kind == "int8-weight-only":
        return ao.Int8WeightOnlyConfig(set_inductor_config=False)
    if kind == "int8-dynamic":
        return ao.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False, reduce_range=reduce_range)
    raise ValueError(f"torchao kind must be one of {TORCHAO_KINDS}, got {kind!r}")


class TorchaoLinear(nn.Module):
    """y = F.linear(x, weight, bias) with `weight` a torchao quantized tensor (N, K).

    forward takes x (..., K) in the dtype the layer was quantized from and returns (..., N).
    Inference only: the parameters do not require grad.
    """

    def __init__(self, weight: nn.Parameter, bias: nn.Parameter | None, kind: str):
        super().__init__()
        self.kind = kind
        self.out_features, self.in_features = weight.shape
        self.weight = weight
        self.bias = bias

    @classmethod
    def from_linear(cls, linear: nn.Linear, kind: str, reduce_range: bool = False) -> TorchaoLinear:
        """Quantize a copy of `linear` (on its device) with torchao's `kind` config; `linear` itself
        is left as it was. reduce_range ("int8-dynamic" only): 7-bit activations and weights, for
        int8 GEMMs whose pair sums would saturate at full range (CPUs without VNNI)."""
        config = _config(kind, reduce_range)
        copy = torch.nn.utils.skip_init(
            nn.Linear, linear.in_features, linear.out_features, bias=linear.bias is not None,
            device=linear.weight.device, dtype=linear.weight.dtype,
        )
        with torch.no_grad():
            copy.weight.copy_(linear.weight)
            if linear.bias is not None:
                copy.bias.copy_(linear.bias)
        copy.requires_grad_(False)
        _torchao().quantize_(copy, config)
        return cls(copy.weight, copy.bias, kind).train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def dequantize(self) -> torch.Tensor:
        """The weight (N, K) this layer computes with, in its original dtype."""
        return self.weight.dequantize()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, kind={self.kind}"
        )


def inner_tensors(t: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors that hold `t`'s data: `t` itself, or for a tensor subclass that wraps
    others (torchao's quantized tensors), its inner tensors, recursively."""
    if type(t) in (torch.Tensor, nn.Parameter) or not hasattr(t, "__tensor_flatten__"):
        return [t]
    names, _ = t.__tensor_flatten__()
    return [leaf for name in names for leaf in inner_tensors(getattr(t, name))]
