"""The executors (seedling/kernels/executor.py) against the model's own forward passes: the fused
executor's K/V buffers, modulation tables and step plans give the model's results, the pipeline
hands the executor its whole schedule before the first step, and no attention request quietly
switches paths."""

import copy

import numpy as np
import pytest
import torch

from seedling.kernels.derived import derived
from seedling.kernels.executor import EXECUTORS, Executor, FusedExecutor, get_executor
from seedling.kernels.step_plan import block_modulations
from tests.test_dit import inputs, perturbed_model, rel


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def model():
    return perturbed_model()


@pytest.mark.parametrize("N", [0, 2])
def test_inference_kv_buffers_equal_the_concatenating_path(model, N):
    """The fused executor's cached step writes the outputs' K/V into per-length buffers after the
    context K/V: one cache serving steps and output counts in any order gives the same as the
    model's concatenating path and as the uncached forward."""
    ex = FusedExecutor()
    _, t, d, st, po, refs = inputs(model, N=N, seed=7)
    cache = ex.encode_context(model, st, po, "compose", refs)
    for M, step in [(1, 0), (2, 0), (1, 1), (2, 2), (1, 2)]:
        x = inputs(model, M=M, seed=step)[0]
        t_s = t * (1 - step / 3)
        concatenated = model.forward_cached(x, t_s, cache, d=d)
        buffered = ex.forward_cached(model, x, t_s, cache, d=d)
        full = model(x, t_s, st, po, "compose", refs, d=d)
        assert torch.allclose(buffered, concatenated, rtol=0, atol=1e-6) and rel(buffered, full) <= 1e-4
    assert sorted(cache.kv_out) == [64, 128]  # one set of buffers per output length


def test_block_modulations_equal_each_blocks_own_and_follow_weight_edits():
    from seedling.kernels.quant import quantize

    m = perturbed_model(3)
    c = torch.randn(3, m.config.width)

    def per_block(model):
        return [blk.modulation(c) for blk in model.blocks]

    def max_diff(a, b):
        return max((x - y).abs().max().item() for aa, bb in zip(a, b) for x, y in zip(aa, bb))

    fused = block_modulations(m, c)
    assert "adaLN_stack" in derived(m)  # the one-product path was taken
    assert len(fused) == len(m.blocks) and all(len(f) == 6 for f in fused)
    assert max_diff(fused, per_block(m)) < 1e-6
    m.blocks[1].adaLN[1].weight.add_(0.5)  # in place: the stacked copy must follow
    assert max_diff(block_modulations(m, c), per_block(m)) < 1e-6
    # gradients: the per-block path, and they reach the adaLN weights
    g = copy.deepcopy(m).requires_grad_(True)
    with torch.enable_grad():
        sum(t.sum() for mods in block_modulations(g, c) for t in mods).backward()
    assert g.blocks[0].adaLN[1].weight.grad is not None
    # quantized adaLN layers: the per-block path (no float weight to stack)
    q = quantize(copy.deepcopy(m), "int8", skip=lambda n, mod: "adaLN" not in n)
    assert max_diff(block_modulations(q, c), per_block(q)) < 1e-6 and "adaLN_stack" not in derived(q)
    # not saved, not copied, not in the model at all
    assert not any("stack" in k for k in m.state_dict())
    assert "adaLN_stack" not in derived(copy.deepcopy(m))
    assert not any("stack" in k or "fused" in k for mod in m.modules() for k in mod.__dict__)


def test_the_plain_executor_is_the_model():
    m = perturbed_model(1)
    ex = get_executor("plain")
    x, t, d, st, po, refs = inputs(m, N=2)
    assert torch.equal(ex.forward(m, x, t, st, po, "compose", refs, d=d), m(x, t, st, po, "compose", refs, d=d))
    cache = ex.encode_context(m, st, po, "compose", refs)
    assert torch.equal(ex.forward_cached(m, x, t, cache, d), m.forward_cached(x, t, m.encode_context(st, po, "compose", refs), d))
    assert ex.plan(m, cache.cond, [(1.0, 0.5)]) is None
    with pytest.raises(ValueError, match="unknown executor 'fast'; choose one of: plain, fused"):
        get_executor("fast")
    assert sorted(EXECUTORS) == ["fused", "plain"]


def test_the_fused_executor_refuses_its_own_caches_only():
    m = perturbed_model(1)
    x, t, d, st, po, refs = inputs(m, N=1)
    with pytest.raises(TypeError, match="its own encode_context"):
        FusedExecutor().forward_cached(m, x, t, m.encode_context(st, po, "compose", refs), d)


def tiny_pipe(executor="fused"):
    from seedling.model.pipeline import SeedlingPipeline

    pipe = SeedlingPipeline.from_config("tiny", seed=0)
    for prm in pipe.dit.parameters():
        prm.add_(torch.randn_like(prm) * 0.05)
    return pipe.set_executor(executor)


@pytest.mark.parametrize("cached", [True, False])
def test_the_pipeline_plans_every_step_the_sampler_runs(cached):
    """The executor gets the schedule up front: every step's (t, d) is in the branch's plan."""
    pipe = tiny_pipe()
    seen = []
    real_cached, real_full = FusedExecutor.forward_cached, FusedExecutor.forward

    def spy_cached(self, dit, x, t, cache, d=None):
        seen.append(cache.plan.step(t, d) is not None)
        return real_cached(self, dit, x, t, cache, d)

    def spy_full(self, dit, x, t, *args, plan=None, d=None, **kw):
        seen.append(plan.step(t, d) is not None)
        return real_full(self, dit, x, t, *args, plan=plan, d=d, **kw)

    FusedExecutor.forward_cached, FusedExecutor.forward = spy_cached, spy_full
    try:
        pipe(prompt="a cat", task="style", images=[np.zeros((64, 64, 3), np.uint8)], height=64, width=64,
             steps=3, guidance=2.0, image_guidance=1.5, seed=0, use_ref_cache=cached, schedule="cosine")
    finally:
        FusedExecutor.forward_cached, FusedExecutor.forward = real_cached, real_full
    assert len(seen) == 3 * 2 and all(seen)  # 3 steps x (cond + no_text batched, none)


def test_plain_and_fused_executors_give_the_same_images():
    a = tiny_pipe("fused")(prompt="a red circle", seed=2, height=64, width=64, steps=3, guidance=2.0)
    b = tiny_pipe("plain")(prompt="a red circle", seed=2, height=64, width=64, steps=3, guidance=2.0)
    diff = np.abs(np.asarray(a.images[0], np.int16) - np.asarray(b.images[0], np.int16))
    assert diff.max() <= 1  # fp32 summation order at most flips a rounding
    assert isinstance(tiny_pipe("plain").executor, Executor) and tiny_pipe().executor.name == "fused"
