"""Quantized linear layers behind one switch: `quantize(model, mode)`.

Modes (`QUANT_MODES`):
  "none"      full precision, the model is returned untouched.
  "int8"      weight-only int8 (`Int8WeightLinear`): per-output-channel symmetric scales, the
              weight is converted inside forward. ~0.25x the fp32 weight bytes. fp32 inputs on
              a CPU that multiplies bf16 natively (AVX512-BF16 or AMX) are multiplied in bf16
              (int8 weights are exact in bf16; the activations are rounded to bf16's 8
              significant bits, finer than the weights' int8 grid) -- 2-3x faster than an fp32
              GEMM at the DiT's shapes; elsewhere the product runs in the activation dtype.
  "w8a8"      int8 weights and dynamic per-token int8 activations (`W8A8Linear`), int32
              matmul through `torch._int_mm`; any device.
  "w8a8-packed"  CPU only: int8 weights pre-packed once for the CPU's int8 GEMM and activations
              quantized per tensor (asymmetric uint8) on every call (`PackedW8A8Linear`): fbgemm's
              `quantized::linear_dynamic` does both in one C++ call; a layer followed by a GELU
              (`kernels.packed.linear_gelu`) runs oneDNN's int8 linear with the GELU fused. The
              fastest CPU mode. The packed weight is the only copy (~0.27x of fp32).
  "bnb-int8"  bitsandbytes `Linear8bitLt` (LLM.int8 with outlier threshold 6.0).
  "bnb-nf4"   bitsandbytes `Linear4bit`, quant_type="nf4" (QLoRA NF4, double-quantized stats).

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

QUANT_MODES = ("none", "int8", "w8a8", "w8a8-packed", "bnb-int8", "bnb-nf4")

# Layers smaller than this stay in full precision by default: their saving is negligible and
# they are the sensitive ones (timestep/task embedders, per-channel heads).
MIN_QUANT_WEIGHTS = 4096

# LLM.int8's default: activation columns with a value above this run in fp16.
NF4_BLOCK = 64  # bitsandbytes' default NF4 block size
BNB_INT8_THRESHOLD = 6.0

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


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: weight (N, K) -> (q (N, K) int8 in [-127, 127], scale (N,) fp32).

    weight ≈ q * scale[:, None]. -128 is left out so that the grid is symmetric around 0.
    """
    w = weight.detach().float()
    # clamp: an all-zero row would give 0/0; any positive scale maps it to zeros.
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


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
        # kernel _weight_int8pack_mm was measured 25-50x slower than this on our shapes.
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
        # a pass over the weight (single-thread microbenchmark: 0.75-1.0x fp32 vs 0.9-1.1x).
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


# The int8 GEMMs PackedW8A8Linear packs for, measured against the packed fp32 GEMM on the DiT's
# layer shapes (96-448 tokens; 256->768, 256->256, 256->1024, 1024->256; a development microbenchmark):
# fbgemm's `quantized::linear_dynamic` is 0.4-0.6x (one C++ call quantizes x, multiplies and
# dequantizes), oneDNN's `qlinear_pointwise` after a separate activation quantization 0.6-1.0x,
# but it can fuse the GELU that follows the MLP's first linear: fc1 + GELU 0.57x of the fused
# fp32 call against fbgemm-then-GELU's 0.84x (M = 192). So layers run on fbgemm, and a layer
# asked for a fused GELU (linear_gelu) repacks itself once for oneDNN.
PACKED_W8A8_ENGINES = ("fbgemm", "onednn")


def _pack_fbgemm(q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
    """fbgemm's packed int8 weight (a LinearPackedParamsBase) for q (N, K) int8, per-row scales."""
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        # torch 2.13 marks quantized tensors deprecated; this is the one place we build one, and
        # packed_w8a8_available() turns the mode off where the ops are gone.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        qw = torch._make_per_channel_quantized_tensor(
            q.cpu(), scale.detach().double().cpu(), torch.zeros(q.shape[0], dtype=torch.long), 0
        )
    try:
        torch.backends.quantized.engine = "fbgemm"
        return torch.ops.quantized.linear_prepack(qw, None if bias is None else bias.detach().float().cpu())
    finally:
        torch.backends.quantized.engine = previous


@functools.cache
def int8_gemm_saturates() -> bool:
    """Whether this CPU's uint8 x int8 GEMM (fbgemm's or oneDNN's) loses full-range activations.

    Without VNNI (AVX2, AVX512 before Cascade Lake) the libraries multiply with vpmaddubsw, whose
    int16 pair sums saturate (2 * 255 * 127 > 32767), so a layer's error would depend on the CPU.
    Probed once, exactly, with the worst case; where it saturates, PackedW8A8Linear quantizes
    activations to 7 bits (reduce_range), which cannot. (FBGEMM_ENABLE_INSTRUCTIONS=AVX2 and
    ONEDNN_MAX_CPU_ISA=AVX2 put any x86 CPU on that path.)"""
    k, n = 64, 8
    x = torch.ones(2, k)
    x[:, 0] = 0.0  # range [0, 1]: every other value quantizes to 255
    q = torch.full((n, k), 127, dtype=torch.int8)
    scale = torch.full((n,), 1.0 / 127)
    want = float(k - 1)
    try:
        fb = torch.ops.quantized.linear_dynamic(x, _pack_fbgemm(q, scale, None), False)
        xq = torch.quantize_per_tensor_dynamic(x, torch.quint8, False)
        dn = torch.ops.onednn.qlinear_pointwise(
            xq.int_repr(), xq.q_scale(), xq.q_zero_point(), torch.ops.onednn.qlinear_prepack(q, None),
            scale, torch.zeros(n, dtype=torch.long), None, 1.0, 0, torch.float32, "none", [], "",
        )
    except (RuntimeError, NotImplementedError, AttributeError):
        return True  # cannot tell: take the setting that is safe everywhere
    return not (torch.allclose(fb, torch.full_like(fb, want), rtol=1e-2)
                and torch.allclose(dn, torch.full_like(dn, want), rtol=1e-2))


@functools.cache
def packed_w8a8_available() -> bool:
    """Whether this torch build has both int8 GEMMs of PackedW8A8Linear (probed once, exactly)."""
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        return False
    q = torch.eye(8, dtype=torch.int8).repeat(1, 2)  # (8, 16): y = 2 for x = 1
    try:
        layer = PackedW8A8Linear.from_int8(q, torch.ones(8), None)
        ok = torch.allclose(layer(torch.ones(2, 16)), torch.full((2, 8), 2.0), atol=0.05)
        layer.repack("onednn")
        ok = ok and torch.allclose(layer(torch.ones(2, 16)), torch.full((2, 8), 2.0), atol=0.05)
    except (RuntimeError, NotImplementedError, AttributeError):
        return False
    return bool(ok)


class PackedW8A8Linear(nn.Module):
    """CPU int8 linear: weights quantized per output row (symmetric, as Int8WeightLinear) and
    pre-packed for an int8 GEMM (PACKED_W8A8_ENGINES); activations quantized on every call, per
    tensor, to uint8 with a zero point (from min and max of x).

    forward: x (..., K), any float dtype, on the CPU -> (..., N) in x's dtype, computed in fp32.
    forward_gelu(x, approximate) = gelu(forward(x)), fused into the GEMM (repacks for oneDNN once).
    The packed weight is the only copy of the weight (`int8_weight()` unpacks it); `weight_scale`
    (N,) and `bias` (N,) are fp32 buffers. No autograd (inference only); the packed weight stays
    on the CPU whatever `.to()` is asked.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", None)
        self.engine = "fbgemm"
        self._packed = None
        self.packed_nbytes = 0

    @classmethod
    def from_int8(cls, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> PackedW8A8Linear:
        module = cls(q.shape[1], q.shape[0])
        module.weight_scale.copy_(scale)
        if bias is not None:
            module.bias = bias.detach().float().clone()
        module._pack(q, "fbgemm")
        return module

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> PackedW8A8Linear:
        if linear.weight.device.type != "cpu":
            raise RuntimeError(
                f"quantize mode 'w8a8-packed' runs on the CPU only (this layer is on "
                f"{linear.weight.device}); use 'w8a8' there"
            )
        q, scale = quantize_rows(linear.weight)
        return cls.from_int8(q, scale, linear.bias).train(linear.training)

    def _pack(self, q: torch.Tensor, engine: str) -> None:
        if engine == "fbgemm":
            self._packed = _pack_fbgemm(q, self.weight_scale, self.bias)
            # what it holds: N*K int8, then per row a float64 scale, an int64 zero point, an
            # int32 column offset and, with a bias, an fp32 bias
            self.packed_nbytes = q.numel() + self.out_features * (20 + (4 if self.bias is not None else 0))
        elif engine == "onednn":
            self._packed = torch.ops.onednn.qlinear_prepack(q.contiguous(), None)  # (K, N), blocked
            self._zero_points = torch.zeros(self.out_features, dtype=torch.long)
            self.packed_nbytes = torch.ops.mkldnn._nbytes(self._packed) + 8 * self.out_features
        else:
            raise ValueError(f"engine must be one of {PACKED_W8A8_ENGINES}, got {engine!r}")
        self.engine = engine

    def repack(self, engine: str) -> None:
        """Move the weight to `engine`'s packed layout (the old one is freed)."""
        if engine != self.engine:
            self._pack(self.int8_weight(), engine)

    def __getstate__(self):
        # The packed weights are opaque (oneDNN's cannot be copied or pickled): copies and pickles
        # carry the int8 weight and pack it again.
        state = self.__dict__.copy()
        state["_packed"] = self.int8_weight()
        return state

    def __setstate__(self, state):
        q = state.pop("_packed")
        super().__setstate__(state)
        self._pack(q, self.engine)

    def int8_weight(self) -> torch.Tensor:
        """q (N, K) int8, unpacked from the packed weight."""
        if self.engine == "fbgemm":
            return torch.ops.quantized.linear_unpack(self._packed)[0].int_repr()
        return self._packed.to_dense().t().contiguous()

    def dequantize(self) -> torch.Tensor:
        """The fp32 weight (N, K) this layer computes with."""
        return self.int8_weight().float() * self.weight_scale.float()[:, None]

    def _run(self, x: torch.Tensor, post_op: str, approximate: str = "") -> torch.Tensor:
        if x.device.type != "cpu":
            raise RuntimeError(f"a 'w8a8-packed' layer runs on the CPU only, got input on {x.device}")
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        x2 = (x2 if x2.dtype == torch.float32 else x2.float()).contiguous()
        if post_op != "none" and self.engine != "onednn":
            self.repack("onednn")
        if self.engine == "fbgemm":
            y = torch.ops.quantized.linear_dynamic(x2, self._packed, int8_gemm_saturates())  # (M, N) fp32
        else:
            xq = torch.quantize_per_tensor_dynamic(x2, torch.quint8, int8_gemm_saturates())
            bias = None if self.bias is None else self.bias.float()  # .float() is free on fp32
            y = torch.ops.onednn.qlinear_pointwise(
                xq.int_repr(), xq.q_scale(), xq.q_zero_point(), self._packed, self.weight_scale.float(),
                self._zero_points, bias, 1.0, 0, torch.float32, post_op, [], approximate,
            )
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, "none")

    def forward_gelu(self, x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
        """F.gelu(self(x), approximate=approximate), the GELU fused into oneDNN's int8 GEMM."""
        return self._run(x, "gelu", "tanh" if approximate == "tanh" else "none")

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, engine={self.engine}"
        )


def _import_bnb(mode: str):
    try:
        import bitsandbytes
    except ImportError as exc:
        raise RuntimeError(
            f"quantize mode {mode!r} needs bitsandbytes, which is not importable: {exc}"
        ) from exc
    return bitsandbytes


def _bnb_linear(linear: nn.Linear, mode: str, bnb) -> nn.Module:
    """The bitsandbytes replacement of `linear`, quantized on `linear`'s device."""
    device = linear.weight.device
    weight = linear.weight.detach().cpu()  # Int8Params only quantizes when moved off the CPU copy
    has_bias = linear.bias is not None
    if mode == "bnb-int8":
        module = bnb.nn.Linear8bitLt(
            linear.in_features,
            linear.out_features,
            has_bias,
            has_fp16_weights=False,
            threshold=BNB_INT8_THRESHOLD,
        )
        module.weight = bnb.nn.Int8Params(weight.clone(), requires_grad=False, has_fp16_weights=False)
    else:
        module = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            has_bias,
            compute_dtype=linear.weight.dtype,
            quant_type="nf4",
        )
        module.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type="nf4")
    if has_bias:
        module.bias = nn.Parameter(linear.bias.detach().cpu().clone(), requires_grad=False)
    return module.to(device).train(linear.training)  # .to() is where bitsandbytes quantizes


def _check_bnb_runs(mode: str, device: torch.device, bnb) -> None:
    """Run one small layer of `mode` on `device`; raise RuntimeError if bitsandbytes can't."""
    gen = torch.Generator().manual_seed(0)
    ref = nn.Linear(128, 128)
    with torch.no_grad():
        ref.weight.copy_(torch.randn(128, 128, generator=gen) * 0.05)
    x = torch.randn(4, 128, generator=gen)
    ref, x = ref.to(device).eval(), x.to(device)
    # Why so broad: any failure here (missing backend op, missing native library, unsupported
    # device) means the mode cannot run on this device; it is re-raised, never swallowed.
    try:
        probe = _bnb_linear(ref, mode, bnb).eval()
        with torch.no_grad():
            y = probe(x).float()
    except Exception as exc:
        raise RuntimeError(
            f"quantize mode {mode!r} cannot run on device {device} with bitsandbytes "
            f"{bnb.__version__}: {type(exc).__name__}: {exc}"
        ) from exc
    with torch.no_grad():
        expected = ref(x).float()
    rel = ((y - expected).norm() / expected.norm()).item()
    if not rel < 0.5:  # NF4 is ~0.1 here; anything near 1 means garbage, not rounding
        raise RuntimeError(
            f"quantize mode {mode!r} runs on device {device} but gives wrong results "
            f"(relative error {rel:.3g} on a probe layer)"
        )


def is_quantized_module(module: nn.Module) -> bool:
    """Whether `module` is one of our quantized layers or a bitsandbytes layer."""
    return isinstance(module, (Int8WeightLinear, PackedW8A8Linear)) or type(module).__module__.startswith(
        "bitsandbytes"
    )


def quantize(model: nn.Module, mode: str | None, *, skip: SkipFn | None = None,
             int8_compute: str = "auto") -> nn.Module:
    """Replace every `nn.Linear` of `model` (not skipped) by its `mode` counterpart, in place.

    Args:
        model: any module; its linears may live on any device, they are quantized where they are.
        mode: one of QUANT_MODES (None means "none").
        skip: `skip(qualified_name, linear) -> True` keeps that layer in full precision.
            Defaults to `default_skip` (fewer than MIN_QUANT_WEIGHTS weights); to add rules
            to it, pass `lambda n, m: default_skip(n, m) or n.startswith("final")`.
        int8_compute: for mode "int8", the product's dtype on fp32 CPU inputs (INT8_COMPUTE):
            "auto" multiplies in bf16 where the CPU does so natively, "fp32" never.

    Returns `model` itself, or the new layer when `model` is itself an `nn.Linear`.
    Raises ValueError on an unknown mode, RuntimeError if `model` already holds quantized
    layers (quantize the fp model instead) or if a bitsandbytes mode cannot run on the device.
    """
    mode = "none" if mode is None else mode
    if int8_compute not in INT8_COMPUTE:
        raise ValueError(f"int8_compute must be one of {INT8_COMPUTE}, got {int8_compute!r}")
    if mode not in QUANT_MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; valid modes: {', '.join(QUANT_MODES)}")
    if mode == "none":
        return model
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
        bnb = _import_bnb(mode)
        for device in {m.weight.device for _, m in targets}:
            _check_bnb_runs(mode, device, bnb)

    replaced: dict[int, nn.Module] = {}
    for name, linear in targets:
        new = replaced.get(id(linear))
        if new is None:
            if mode == "int8":
                new = Int8WeightLinear.from_linear(linear, compute=int8_compute)
            elif mode == "w8a8":
                new = W8A8Linear.from_linear(linear)
            elif mode == "w8a8-packed":
                new = PackedW8A8Linear.from_linear(linear)
            else:
                new = _bnb_linear(linear, mode, bnb)
            replaced[id(linear)] = new
        if name == "":
            return new
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, new)
    return model


def _linear_like(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or is_quantized_module(module)


def _quant_side_tensors(weight) -> list[torch.Tensor]:
    """Tensors bitsandbytes keeps on a weight outside params/buffers (int8 row scales, NF4 state)."""
    tensors = [getattr(weight, "SCB", None)]
    state = getattr(weight, "quant_state", None)
    while state is not None:  # NF4 double quantization nests a second state for the absmax
        tensors += [state.absmax, state.code, getattr(state, "offset", None)]
        state = getattr(state, "state2", None)
    return [t for t in tensors if isinstance(t, torch.Tensor)]


def weight_bytes(model: nn.Module) -> int:
    """Bytes held by the linear-like layers of `model`: parameters, buffers and quantization state
    (for PackedW8A8Linear, the contents of its packed weight).

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
        tensors += _quant_side_tensors(getattr(module, "weight", None))
        for t in tensors:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values()) + packed
