"""kernels/packed.py: oneDNN-packed fp32 linears for CPU inference."""

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seedling.kernels.executor import FusedExecutor
from seedling.kernels.packed import (
    PackedLinear,
    count_packed,
    pack_linears,
    packing_available,
    refresh_packed,
    unpack_linears,
)

pytestmark = pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN")


def packed_copy(lin: nn.Linear) -> nn.Linear:
    p = copy.deepcopy(lin)
    assert pack_linears(p) == 1
    return p


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("shape", [(256,), (7, 256), (2, 64, 256), (2, 3, 5, 256)])
def test_packed_equals_linear_up_to_rounding(shape):
    torch.manual_seed(0)
    lin = nn.Linear(256, 768)
    p = packed_copy(lin)
    x = torch.randn(*shape)
    with torch.no_grad():
        ref = lin(x.double().float())  # fp32 F.linear
        exact = F.linear(x.double(), lin.weight.double(), lin.bias.double())
        out = p(x)
        assert p.uses_packed(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert rel(out.double(), exact) < 1e-5  # as close to the fp64 product as MKL's fp32 is
    assert rel(ref.double(), exact) < 1e-5


def test_non_contiguous_input_and_no_bias():
    torch.manual_seed(0)
    lin = nn.Linear(64, 32, bias=False)
    p = packed_copy(lin)
    x = torch.randn(64, 10).t()  # (10, 64), not contiguous
    with torch.no_grad():
        assert rel(p(x), lin(x)) < 1e-5


def test_every_case_that_needs_the_plain_path_takes_it():
    torch.manual_seed(0)
    lin = nn.Linear(32, 16)
    p = packed_copy(lin)
    x = torch.randn(4, 32)
    # gradients: the packed op has no backward, so training goes through F.linear and learns
    assert not p.uses_packed(x.requires_grad_())
    p(x).sum().backward()
    assert p.weight.grad is not None and torch.equal(p.weight.grad, torch.ones(16, 1) * x.detach().sum(0))
    with torch.no_grad():
        assert p.uses_packed(x)  # same input, no gradient wanted
        assert not p.uses_packed(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not p.uses_packed(x)
            assert p(x).dtype == torch.bfloat16  # autocast's dtype, as nn.Linear gives
    with torch.no_grad():
        p64 = packed_copy(lin).double()
        assert not p64.uses_packed(x.double())
        assert torch.equal(p64(x.double()), F.linear(x.double(), p64.weight, p64.bias))


def test_weight_edits_invalidate_the_packed_weight():
    torch.manual_seed(0)
    lin = nn.Linear(32, 16)
    p = packed_copy(lin)
    x = torch.randn(4, 32)
    with torch.no_grad():
        before = p(x)
        p.weight.add_(1.0)  # in place, as set_adapters does
        assert rel(p(x), F.linear(x, p.weight, p.bias)) < 1e-5
        assert not torch.allclose(p(x), before)
        p.load_state_dict(lin.state_dict())  # copy_ back
        assert rel(p(x), before) < 1e-6
        p.weight = nn.Parameter(torch.zeros(16, 32))  # a new parameter object
        assert torch.allclose(p(x), p.bias.expand(4, 16))
        p.weight.data.fill_(1.0)  # .data bypasses the version counter: refresh by hand
        refresh_packed(p)
        assert rel(p(x), F.linear(x, p.weight, p.bias)) < 1e-5


def test_packing_keeps_module_identity_state_dict_and_round_trips():
    torch.manual_seed(0)
    shared = nn.Linear(8, 8)
    model = nn.Sequential(nn.Linear(8, 8), nn.GELU(), shared, shared, nn.LayerNorm(8))
    keys = list(model.state_dict())
    first = model[0]
    assert pack_linears(model) == 2  # the shared linear is one module
    assert model[0] is first and type(model[0]) is PackedLinear and model[2] is model[3]
    assert list(model.state_dict()) == keys
    x = torch.randn(3, 8)
    with torch.no_grad():
        y = model(x)
        clone = copy.deepcopy(model)  # the packed cache is not copied, it is rebuilt
        assert rel(clone(x), y) < 1e-6
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        assert rel(loaded(x), y) < 1e-6
    assert unpack_linears(model) == 2 and count_packed(model) == 0
    assert type(model[0]) is nn.Linear and not hasattr(model[0], "_packed")


def test_quantize_and_adapters_treat_packed_layers_as_linears():
    from seedling.kernels.quant import Int8WeightLinear, quantize
    from seedling.model.adapters import Adapter, remove_adapters, set_adapters

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 64))
    plain = copy.deepcopy(model)
    pack_linears(model)
    x = torch.randn(5, 128)
    a, b = torch.randn(4, 128) * 0.1, torch.randn(128, 4) * 0.1
    lora = Adapter("lora", {"0.lora_A.weight": a, "0.lora_B.weight": b}, {"name": "t", "rank": 4, "alpha": 4})
    with torch.no_grad():
        base = model(x)
        set_adapters(model, [(lora, 1.0)])
        set_adapters(plain, [(lora, 1.0)])
        assert rel(model(x), plain(x)) < 1e-5  # merged into the weight: the packed copy follows
        assert not torch.allclose(model(x), base)
        remove_adapters(model)
        assert torch.equal(model(x), base)
    q = quantize(copy.deepcopy(model), "int8")
    assert isinstance(q[0], Int8WeightLinear) and isinstance(q[2], Int8WeightLinear)


def test_packed_dit_cached_and_uncached_agree():
    from seedling.model.dit import DiT_configs, UnifiedDiT

    torch.manual_seed(0)
    dit = UnifiedDiT(DiT_configs["tiny"]()).eval()
    for prm in dit.parameters():
        with torch.no_grad():
            prm.add_(torch.randn_like(prm) * 0.05)
    plain = copy.deepcopy(dit)
    assert pack_linears(dit) > 0
    cfg = dit.config
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, cfg.latent_channels, 8, 8, generator=g)
    st, po = torch.randn(2, cfg.text_len, 384, generator=g), torch.randn(2, 384, generator=g)
    refs = [torch.randn(2, cfg.latent_channels, 8, 8, generator=g) for _ in range(3)]
    t = torch.tensor([0.3, 0.8])
    ex = FusedExecutor()  # the packed model as the pipeline runs it
    with torch.no_grad():
        ref = plain(x, t, st, po, "compose", refs)
        un = dit(x, t, st, po, "compose", refs)
        ca = dit.forward_cached(x, t, dit.encode_context(st, po, "compose", refs))
        ex_un = ex.forward(dit, x, t, st, po, "compose", refs)
        ex_ca = ex.forward_cached(dit, x, t, ex.encode_context(dit, st, po, "compose", refs))
    assert rel(un, ref) < 1e-5 and rel(ex_un, ref) < 1e-5
    assert rel(ca, ref) < 1e-4 and rel(ex_ca, ref) < 1e-4


def test_pipeline_packs_by_default_and_plain_gives_the_same_images():
    from seedling.model.pipeline import SeedlingPipeline

    pipe = SeedlingPipeline.from_config("tiny", seed=0)
    for prm in pipe.dit.parameters():
        with torch.no_grad():
            prm.add_(torch.randn_like(prm) * 0.05)
    assert pipe.linear_kernel == "packed" and count_packed(pipe.dit) > 0
    a = pipe(prompt="a red circle", seed=2, height=64, width=64, steps=3)
    pipe.set_linear_kernel("plain")
    assert pipe.linear_kernel == "plain" and count_packed(pipe.dit) == 0
    b = pipe(prompt="a red circle", seed=2, height=64, width=64, steps=3)
    diff = np.abs(np.asarray(a.images[0], np.int16) - np.asarray(b.images[0], np.int16))
    assert diff.max() <= 1  # fp32 summation order at most flips a rounding
    with pytest.raises(ValueError, match="unknown linear kernel"):
        pipe.set_linear_kernel("fast")


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_linear_gelu_fuses_on_the_packed_path_only(approximate):
    from seedling.kernels.packed import linear_gelu

    torch.manual_seed(0)
    lin = nn.Linear(64, 256)
    p = packed_copy(lin)
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        ref = F.gelu(lin(x), approximate=approximate)
        assert rel(linear_gelu(p, x, approximate), ref) < 1e-5
        assert torch.equal(linear_gelu(lin, x, approximate), ref)  # plain linear: the two calls
        seen = []
        handle = p.register_forward_hook(lambda m, i, o: seen.append(1))
        assert rel(linear_gelu(p, x, approximate), ref) < 1e-5 and seen == [1]  # hooks are honoured
        handle.remove()
    # with gradients, the unfused calls (which have a backward)
    y = linear_gelu(p, x.requires_grad_(), approximate)
    y.sum().backward()
    assert x.grad is not None


def test_text_encoder_is_packed_and_matches_the_plain_model():
    from seedling.model.text_encoder import TextEncoder

    te = TextEncoder(max_length=16, cache_size=0)
    assert count_packed(te.model) > 0
    prompts = ["a red circle at the top left", "an owl"]
    states, pooled = te.encode(prompts)
    unpack_linears(te.model)
    te._cache.clear()
    ref_states, ref_pooled = te.encode(prompts)
    assert rel(states, ref_states) < 1e-5 and rel(pooled, ref_pooled) < 1e-5
