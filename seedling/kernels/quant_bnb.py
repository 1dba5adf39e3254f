"""`bnb-int8` and `bnb-nf4`: bitsandbytes' `Linear8bitLt` (LLM.int8) and `Linear4bit` (NF4)
built from an fp `nn.Linear`, with a probe that runs one small layer before a model is converted.
"""

from __future__ import annotations

import torch
from torch import nn

NF4_BLOCK = 64  # bitsandbytes' default NF4 block size
# LLM.int8's default: activation columns with a value above this run in fp16.
BNB_INT8_THRESHOLD = 6.0


def import_bnb(mode: str):
    try:
        import bitsandbytes
    except ImportError as exc:
        raise RuntimeError(
            f"quantize mode {mode!r} needs bitsandbytes, which is not importable: {exc}"
        ) from exc
    return bitsandbytes


def bnb_linear(linear: nn.Linear, mode: str, bnb) -> nn.Module:
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


def check_bnb_runs(mode: str, device: torch.device, bnb) -> None:
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
        probe = bnb_linear(ref, mode, bnb).eval()
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


def bnb_side_tensors(weight) -> list[torch.Tensor]:
    """Tensors bitsandbytes keeps on a weight outside params/buffers (int8 row scales, NF4 state)."""
    tensors = [getattr(weight, "SCB", None)]
    state = getattr(weight, "quant_state", None)
    while state is not None:  # NF4 double quantization nests a second state for the absmax
        tensors += [state.absmax, state.code, getattr(state, "offset", None)]
        state = getattr(state, "state2", None)
    return [t for t in tensors if isinstance(t, torch.Tensor)]
