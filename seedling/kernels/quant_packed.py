"""`w8a8-packed`: CPU int8 linears on torch's int8 GEMMs with pre-packed weights.

`PackedW8A8Linear` quantizes weights per output row (kernels/quant_rows.py) and packs them once
for fbgemm's `quantized::linear_dynamic`, which quantizes the activations per tensor (asymmetric
uint8), multiplies and dequantizes in one C++ call. A layer asked for a fused GELU
(`kernels.packed.linear_gelu`) repacks itself once for oneDNN's `qlinear_pointwise`, which can
fuse it. Two exact probes guard the mode: `packed_w8a8_available()` (this torch build has both
GEMMs) and `int8_gemm_saturates()` (this CPU's uint8 x int8 GEMM lacks VNNI and would saturate
full-range activations). Measurements: docs/acceleration.md ("w8a8-packed").
"""

from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from seedling.kernels.quant_rows import quantize_rows

# fbgemm's one-call dynamic linear is the faster of the two for a plain layer; only oneDNN can
# fuse the GELU that follows the MLP's first linear. So layers start on fbgemm, and a layer
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
