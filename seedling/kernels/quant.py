"""Quantized linear layers behind one switch: `quantize(model, mode, backend=...)`.

Modes (`QUANT_MODES`):
  "none"      full precision, the model is returned untouched.
  "int8"      weight-only int8 (`Int8WeightLinear`): per-output-channel symmetric scales, the
              weight is converted inside forward. ~0.25x the fp32 weight bytes. fp32 inputs on
              a CPU that multiplies bf16 natively (AVX512-BF16 or AMX) are multiplied in bf16
              (int8 weights are exact in bf16; the activations are rounded to bf16's 8
              significant bits, finer than the weights' int8 grid), faster than an fp32 GEMM at
              the DiT's shapes; elsewhere the product runs in the activation dtype.
  "w8a8"      int8 weights and dynamic per-token int8 activations (`W8A8Linear`), int32
              matmul through `torch._int_mm`; any device.
  "w8a8-packed"  CPU only: int8 weights pre-packed once for the CPU's int8 GEMM and activations
              quantized per tensor (asymmetric uint8) on every call (`PackedW8A8Linear`,
              kernels/quant_packed.py). The fastest CPU mode. The packed weight is the only copy.
  "bnb-int8"  bitsandbytes `Linear8bitLt` (LLM.int8 with outlier threshold 6.0; quant_bnb.py).
  "bnb-nf4"   bitsandbytes `Linear4bit`, quant_type="nf4" (QLoRA NF4, double-quantized stats).

Backends (`QUANT_BACKENDS`): "studio" (the default) builds the layers above; "torchao" builds
"int8" and "w8a8" on torchao's `Int8WeightOnlyConfig` and `Int8DynamicActivationInt8WeightConfig`
(`TorchaoLinear`, kernels/quant_torchao.py), the same arithmetic from a maintained library.
The studio's layers stay the default because they measured faster on the CPU this project runs
on (docs/acceleration.md, "Quantization: the studio's layers against torchao"); without torchao
installed, "torchao" raises RuntimeError and "studio" works as before.

Only modules whose type is exactly `nn.Linear` (or `kernels.packed.PackedLinear`, an
`nn.Linear` with a faster CPU forward) are replaced: subclasses such as
`nn.MultiheadAttention.out_proj` are read through `.weight` by their owner and must stay.

Quantization is an inference transform applied *after* loading full-precision weights: the
pipeline loads the fp checkpoint, then calls `quantize`. The quantized modules survive
`model.to(device)`, but their `state_dict` has other keys than `nn.Linear` and is not meant to
be saved or loaded; a quantized model is never written back as a checkpoint.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from seedling.kernels.packed import is_linear
from seedling.kernels.quant_bnb import (
    BNB_INT8_THRESHOLD,
    NF4_BLOCK,
    bnb_linear,
    bnb_side_tensors,
    check_bnb_runs,
    import_bnb,
)
from seedling.kernels.quant_packed import (
    PACKED_W8A8_ENGINES,
    PackedW8A8Linear,
    int8_gemm_saturates,
    packed_w8a8_available,
)
from seedling.kernels.quant_rows import quantize_rows
from seedling.kernels.quant_torchao import TorchaoLinear, inner_tensors, torchao_available

# The layers and probes live in quant_*.py by backend; this module is the one place callers import.
__all__ = [
    "BNB_INT8_THRESHOLD",
    "INT8_COMPUTE",
    "MIN_QUANT_WEIGHTS",
    "NF4_BLOCK",
    "PACKED_W8A8_ENGINES",
    "QUANT_BACKENDS",
    "QUANT_MODES",
    "TORCHAO_MODES",
    "Int8WeightLinear",
    "PackedW8A8Linear",
    "TorchaoLinear",
    "W8A8Linear",
    "default_skip",
    "int8_gemm_saturates",
    "int_mm_available",
    "is_quantized_module",
    "native_bf16_cpu",
    "packed_w8a8_available",
    "quantize",
    "quantize_rows",
    "weight_bytes",
]

QUANT_MODES = ("none", "int8", "w8a8", "w8a8-packed", "bnb-int8", "bnb-nf4")

# Layers smaller than this stay in full precision by default: their saving is negligible and
# they are the sensitive ones (timestep/task embedders, per-channel heads).
MIN_QUANT_WEIGHTS = 4096

# Who implements a mode: our layers, or torchao's (only for the modes it has; see TORCHAO_MODES).
QUANT_BACKENDS = ("studio", "torchao")
# Our mode -> the torchao layer with the same arithmetic: per-row symmetric int8 weights, and for
# w8a8 per-token symmetric int8 activations with int32 products.
TORCHAO_MODES = {"int8": "int8-weight-only", "w8a8": "int8-dynamic"}

SkipFn = Callable[[str, nn.Module], bool]


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 dot-product instructions (x86 AVX512-BF16 or AMX-BF16), read from
    /proc/cpuinfo. Elsewhere oneDNN emulates bf16 and an fp32 GEMM is as fast or faster."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# Int8WeightLinear's compute for fp32 CPU inputs: "auto" (bf16 where native_bf16_cpu()),
# "bf16" or "fp32". Settable per layer (`.compute`) or for every int8 layer by quantize(...,
# int8_compute=...).
INT8_COMPUTE = ("auto", "bf16", "fp32")


def default_skip(name: str, module: nn.Module) -> bool:
    """Keep `module` in full precision when its weight has fewer than MIN_QUANT_WEIGHTS entries."""
    return module.weight.numel() < MIN_QUANT_WEIGHTS


class Int8WeightLinear(nn.Module):
    """Weight-only int8 linear: y = x @ (q * scale[:, None]).T + bias.

    Buffers: `weight_int8` (N, K) int8, `weight_scale` (N,) fp32; `bias` (N,) stays a float
    parameter. forward takes x (..., K) in any float dtype and returns (..., N) in that dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 compute: str = "auto"):
        super().__init__()
        if compute not in INT8_COMPUTE:
            raise ValueError(f"int8 compute must be one of {INT8_COMPUTE}, got {compute!r}")
        self.compute = compute
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer(
            "weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8, device=device)
        )
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute: str = "auto") -> Int8WeightLinear:
        """Quantize an fp `nn.Linear` (its device is kept, its training flag too)."""
        module = cls(
            linear.in_features, linear.out_features, linear.bias is not None, device=linear.weight.device,
            compute=compute,
        )
        q, scale = quantize_rows(linear.weight)
        module.weight_int8.copy_(q)
        module.weight_scale.copy_(scale)
        if linear.bias is not None:
            module.bias.data = linear.bias.detach().clone()
        return module.train(linear.training)

    def dequantize(self) -> torch.Tensor:
        """The fp32 weight (N, K) this layer computes with."""
        return self.weight_int8.float() * self.weight_scale.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The only (N, K) temporary is the int8 -> float copy of the weight. aten's fused CPU
        # kernel _weight_int8pack_mm is much slower than this at our shapes (docs/acceleration.md).
        scale = self.weight_scale.to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.uses_bf16(x):
            # int8 -> bf16 is exact; oneDNN's bf16 GEMM accumulates in fp32.
            y = F.linear(x.to(torch.bfloat16), self.weight_int8.to(torch.bfloat16)).float().mul_(scale)
            return y if bias is None else y.add_(bias)
        if x.dtype == torch.float16:
            # fp16's range (65504) can't hold unscaled int8 products: scale the weight first.
            return F.linear(x, self.weight_int8.to(x.dtype).mul_(scale[:, None]), bias)
        # x @ (q * s).T == (x @ q.T) * s: scaling the (..., N) output instead of the weight saves
        # a pass over the weight.
        y = F.linear(x, self.weight_int8.to(x.dtype)).mul_(scale)
        return y if bias is None else y.add_(bias)

    def uses_bf16(self, x: torch.Tensor) -> bool:
        """Whether forward(x) multiplies in bf16 (fp32 CPU input and compute "bf16", or "auto" on a
        CPU with native bf16)."""
        if x.dtype != torch.float32 or x.device.type != "cpu":
            return False
        return self.compute == "bf16" or (self.compute == "auto" and native_bf16_cpu())

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


@functools.cache
def int_mm_available(device_type: str) -> bool:
    """Whether torch._int_mm (int8 @ int8 -> int32) runs on this device type and is exact there
    (probed once with the extreme values: on CPUs without VNNI its int16 pair sums saturate)."""
    a = torch.full((32, 64), 127, dtype=torch.int8)
    a[1::2] = -128
    b = torch.full((64, 32), 127, dtype=torch.int8)
    b[:, 1::2] = -128
    try:
        got = torch._int_mm(a.to(device_type), b.to(device_type)).cpu()
    except (RuntimeError, NotImplementedError):
        return False
    return torch.equal(got, (a.long() @ b.long()).int())


def _int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (M, K) int8 @ b (K, N) int8 -> (M, N) int32 exact, or fp32 emulation where _int_mm is missing."""
    if not int_mm_available(a.device.type):
        warnings.warn(
            f"torch._int_mm is not available (or not exact) on this {a.device.type}; W8A8Linear "
            "emulates the int8 matmul "
            "in float32 (same result for K <= 1040, no speed-up)",
            RuntimeWarning,
            stacklevel=3,
        )
        return a.float() @ b.float()
    m = a.shape[0]
    if a.is_cuda and m <= 16:
        # The CUDA kernel rejects M <= 16; zero rows are free to add and drop.
        return torch._int_mm(F.pad(a, (0, 0, 0, 17 - m)), b)[:m]
    # Without AVX512-VNNI the CPU kernel is a slow scalar loop: correct, just not faster.
    return torch._int_mm(a, b)


class W8A8Linear(Int8WeightLinear):
    """int8 weights and dynamic per-token int8 activations, int32 accumulation.

    forward: x (..., K) -> per-row scale sx (M, 1) with M = prod(...), xq (M, K) int8,
    y = (xq @ q.T) * sx * scale + bias, returned as (..., N) in x's dtype.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()  # (M, K)
        sx = x2.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0  # (M, 1)
        xq = torch.round(x2 / sx).clamp_(-127, 127).to(torch.int8)  # (M, K)
        y = _int_mm(xq, self.weight_int8.t()).float()  # (M, N) exact integer dot products
        y.mul_(sx).mul_(self.weight_scale.float())
        if self.bias is not None:
            y.add_(self.bias.float())
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)


def is_quantized_module(module: nn.Module) -> bool:
    """Whether `module` is one of our quantized layers or a bitsandbytes layer."""
    return isinstance(module, (Int8WeightLinear, PackedW8A8Linear, TorchaoLinear)) or type(module).__module__.startswith(
        "bitsandbytes"
    )


def _torchao_reduce_range(mode: str, linear: nn.Linear) -> bool:
    """Whether torchao's dynamic int8 must use its reduced range for `linear`. torchao picks its CPU
    int8 GEMM from the CPU's flags, not from what oneDNN may use (ONEDNN_MAX_CPU_ISA), and does
    not reduce the range by itself; our exact probes see what the GEMMs really do."""
    if mode != "w8a8" or linear.weight.device.type != "cpu":
        return False
    return not int_mm_available("cpu") or int8_gemm_saturates()


def quantize(model: nn.Module, mode: str | None, *, skip: SkipFn | None = None,
             int8_compute: str = "auto", backend: str = "studio") -> nn.Module:
    """Replace every `nn.Linear` of `model` (not skipped) by its `mode` counterpart, in place.

    Args:
        model: any module; its linears may live on any device, they are quantized where they are.
        mode: one of QUANT_MODES (None means "none").
        skip: `skip(qualified_name, linear) -> True` keeps that layer in full precision.
            Defaults to `default_skip` (fewer than MIN_QUANT_WEIGHTS weights); to add rules
            to it, pass `lambda n, m: default_skip(n, m) or n.startswith("final")`.
        int8_compute: for mode "int8", the product's dtype on fp32 CPU inputs (INT8_COMPUTE):
            "auto" multiplies in bf16 where the CPU does so natively, "fp32" never.
        backend: who implements `mode` (QUANT_BACKENDS): "studio" (the layers of kernels/quant*.py)
            or "torchao" (for the modes in TORCHAO_MODES; kernels/quant_torchao.py).

    Returns `model` itself, or the new layer when `model` is itself an `nn.Linear`.
    Raises ValueError on an unknown mode, RuntimeError if `model` already holds quantized
    layers (quantize the fp model instead) or if a bitsandbytes mode cannot run on the device.
    """
    mode = "none" if mode is None else mode
    if int8_compute not in INT8_COMPUTE:
        raise ValueError(f"int8_compute must be one of {INT8_COMPUTE}, got {int8_compute!r}")
    if mode not in QUANT_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; valid modes: {', '.join(QUANT_MODES)}")
    if backend not in QUANT_BACKENDS:
        raise ValueError(f"quantization backend must be one of {QUANT_BACKENDS}, got {backend!r}")
    if mode == "none":
        return model
    if backend == "torchao":
        if mode not in TORCHAO_MODES:
            raise ValueError(f"torchao implements the modes {', '.join(TORCHAO_MODES)}, not {mode!r}")
        if not torchao_available():
            raise RuntimeError(f"quantize mode {mode!r} on torchao needs the torchao package, which does not import")
    already = [name or "<root>" for name, m in model.named_modules() if is_quantized_module(m)]
    if already:
        raise RuntimeError(
            f"model is already quantized ({len(already)} layers, e.g. {already[0]!r}); "
            "quantize a full-precision model, not a quantized one"
        )
    skip = default_skip if skip is None else skip
    # remove_duplicate=False: a linear shared by two parents is replaced in both, by one module.
    targets = [
        (name, m)
        for name, m in model.named_modules(remove_duplicate=False)
        if is_linear(m) and not skip(name, m)
    ]
    if mode == "bnb-nf4":
        # bitsandbytes' CPU inference path repacks NF4 weights in blocks of NF4_BLOCK input
        # features and breaks on narrower layers (e.g. the DiT's 32-wide latent embedding):
        # those stay in full precision.
        targets = [(n, m) for n, m in targets if m.in_features % NF4_BLOCK == 0]
    if mode == "w8a8-packed":
        if not packed_w8a8_available():
            raise RuntimeError(
                "quantize mode 'w8a8-packed' needs torch's fbgemm and oneDNN int8 linears "
                "(quantized::linear_dynamic, onednn::qlinear_pointwise), which this torch build lacks; use 'w8a8'"
            )
        elsewhere = {str(m.weight.device) for _, m in targets if m.weight.device.type != "cpu"}
        if elsewhere:
            raise RuntimeError(
                f"quantize mode 'w8a8-packed' runs on the CPU only; the model is on {', '.join(sorted(elsewhere))}: "
                "use 'w8a8' there"
            )
    bnb = None
    if mode.startswith("bnb-"):
        bnb = import_bnb(mode)
        for device in {m.weight.device for _, m in targets}:
            check_bnb_runs(mode, device, bnb)

    replaced: dict[int, nn.Module] = {}
    for name, linear in targets:
        new = replaced.get(id(linear))
        if new is None:
            if backend == "torchao":
                new = TorchaoLinear.from_linear(linear, TORCHAO_MODES[mode], _torchao_reduce_range(mode, linear))
            elif mode == "int8":
                new = Int8WeightLinear.from_linear(linear, compute=int8_compute)
            elif mode == "w8a8":
                new = W8A8Linear.from_linear(linear)
            elif mode == "w8a8-packed":
                new = PackedW8A8Linear.from_linear(linear)
            else:
                new = bnb_linear(linear, mode, bnb)
            replaced[id(linear)] = new
        if name == "":
            return new
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, new)
    return model


def _linear_like(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_quantized_module(module)

def weight_bytes(model: nn.Module) -> int:
    """Bytes held by the linear-like layers of `model`: parameters, buffers and quantization state
    (for PackedW8A8Linear, the contents of its packed weight; for torchao's quantized weights, the
    tensors they wrap).

    Storage shared between tensors (views, a codebook common to all NF4 layers) counts once.
    """
    storages: dict[int, int] = {}
    packed = 0
    for module in model.modules():
        if isinstance(module, PackedW8A8Linear):
            packed += module.packed_nbytes
        if not _linear_like(module):
            continue
        tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        tensors += bnb_side_tensors(getattr(module, "weight", None))
        for leaf in (leaf for t in tensors for leaf in inner_tensors(t)):
            storage = leaf.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) + packed
