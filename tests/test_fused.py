"""The fused C++ DiT block (kernels/fused.py), as the fused executor runs it (kernels/executor.py),
against the Python blocks it replaces at inference, and the per-generation StepPlan
(kernels/step_plan.py) against per-step conditioning."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from seedling.kernels import fused
from seedling.kernels.executor import Executor, FusedExecutor
from seedling.kernels.fused_weights import block_weights
from seedling.kernels.packed import pack_linears
from seedling.kernels.step_plan import plan_steps
from seedling.model.dit import DiT_tiny, UnifiedDiT
from tests.test_dit import inputs as dit_inputs
from tests.test_dit import rel

REPO = Path(__file__).resolve().parents[1]
EX = FusedExecutor()

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None and shutil.which("c++") is None,
                                    reason="no C++ compiler: the fused blocks cannot be built here")


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def packed_model(seed=0, cfg=None):
    torch.manual_seed(seed)
    m = UnifiedDiT(cfg or DiT_tiny()).eval().requires_grad_(False)
    for p in m.parameters():  # away from the zero init, so every path carries signal
        p.add_(torch.randn_like(p) * 0.05)
    pack_linears(m)
    return m


def inputs(m, B=2, M=1, N=0, side=16, seed=1):
    """test_dit's inputs with one (t, d) for the whole batch, as the sampler passes (a StepPlan's key)."""
    x, _, _, st, po, refs = dit_inputs(m, B=B, M=M, N=N, h=side, w=side, seed=seed)
    return x, torch.full((B,), 0.625), torch.full((B,), 0.125), st, po, refs


@pytest.fixture(scope="module")
def model():
    return packed_model()


@needs_compiler
def test_the_extension_builds_and_loads():
    assert fused.available(), fused.last_error()
    assert fused.library_path().exists()


@needs_compiler
@pytest.mark.parametrize("N,M,B", [(0, 1, 1), (1, 1, 1), (2, 2, 2), (4, 1, 1), (3, 3, 2), (4, 4, 1)])
def test_fused_blocks_equal_the_python_blocks(model, N, M, B):
    x, t, d, st, po, refs = inputs(model, B=B, M=M, N=N, seed=N * 10 + M)
    masks = [torch.rand(B, 1, 16, 16).round() for _ in refs] if N else None
    calls = []
    real = fused.dit_blocks

    def spy(*args):
        calls.append(args[9])
        return real(*args)

    fused.dit_blocks = spy
    try:
        v_full = EX.forward(model, x, t, st, po, "compose", refs, masks, d=d)
        cache = EX.encode_context(model, st, po, "compose", refs, masks)
        v_cached = EX.forward_cached(model, x, t, cache, d)
    finally:
        fused.dit_blocks = real
    assert calls == ["full", "context", "outputs"]  # every block in one call per path
    with fused.disabled():
        p_full = EX.forward(model, x, t, st, po, "compose", refs, masks, d=d)
        p_cache = EX.encode_context(model, st, po, "compose", refs, masks)
        p_cached = EX.forward_cached(model, x, t, p_cache, d)
    assert rel(v_full, p_full) < 1e-5 and rel(v_cached, p_cached) < 1e-5
    for (k, v), (pk, pv) in zip(cache.kv, p_cache.kv):
        assert rel(k, pk) < 1e-5 and rel(v, pv) < 1e-5
    assert rel(v_cached, v_full) < 1e-4  # the cache's invariant holds on the fused path too


@needs_compiler
def test_fused_default_width_and_context_written_into_the_step_buffers():
    from seedling.model.dit import DiT_default

    m = packed_model(cfg=DiT_default())
    x, t, d, st, po, refs = inputs(m, B=1, N=2)
    n_out = 64
    plain = EX.encode_context(m, st, po, "compose", refs)
    direct = EX.encode_context(m, st, po, "compose", refs, n_out=n_out)
    assert direct.weights is not None and list(direct.kv_out) == [n_out]
    for (k, v), (kb, vb), (pk, pv) in zip(direct.kv, direct.kv_out[n_out], plain.kv):
        assert k.data_ptr() == kb.data_ptr() and v.data_ptr() == vb.data_ptr()  # views of the buffers' head
        assert torch.equal(k, pk) and torch.equal(v, pv)
    a, b = EX.forward_cached(m, x, t, direct, d), EX.forward_cached(m, x, t, plain, d)
    assert torch.equal(a, b)
    assert rel(a, m(x, t, st, po, "compose", refs, d=d)) < 1e-4


@needs_compiler
def test_python_blocks_run_where_the_fused_one_cannot(model):
    """Gradients, unpacked or quantized layers, hooks: the Python blocks. A backend the fused
    blocks do not compute is refused on the fused executor, and runs on the plain one."""
    from seedling.kernels.quant import quantize

    x, t, d, st, po, refs = inputs(model, N=1)

    def boom(*args):
        raise AssertionError("the fused block must not run here")

    real, fused.dit_blocks = fused.dit_blocks, boom
    try:
        with torch.enable_grad():
            g = packed_model()
            g.requires_grad_(True)
            out = EX.forward(g, x, t, st, po, "compose", refs, d=d)
            assert out.requires_grad
        unpacked = UnifiedDiT(DiT_tiny()).eval()
        EX.forward(unpacked, x, t, st, po, "compose", refs, d=d)
        q = quantize(packed_model(), "int8")
        EX.forward_cached(q, x, t, EX.encode_context(q, st, po, "compose", refs), d)
        hooked = packed_model()
        hooked.blocks[1].proj.register_forward_hook(lambda mod, inp, out: out * 2)
        EX.forward(hooked, x, t, st, po, "compose", refs, d=d)
        with pytest.raises(ValueError, match=r"compute attention \('split',\), not 'dense'.*plain executor"):
            EX.forward(model, x, t, st, po, "compose", refs, d=d, backend="dense")
        dense = Executor().forward(model, x, t, st, po, "compose", refs, d=d, backend="dense")
    finally:
        fused.dit_blocks = real
    assert rel(dense, EX.forward(model, x, t, st, po, "compose", refs, d=d)) < 1e-5


@needs_compiler
def test_the_op_rejects_bad_arguments(model):
    assert fused.available()
    blk = model.blocks[0]
    w = block_weights(blk)
    D, Dh = model.config.width, model.dims.head_dim
    x = torch.randn(1, 4, D)
    one = torch.randn(1, 1, 6, D)  # the modulation table of a one-block model
    cos, sin = torch.ones(4, Dh // 2), torch.zeros(4, Dh // 2)
    with pytest.raises(RuntimeError, match="mode must be"):
        fused.dit_blocks(x, one, None, 0, w, cos, sin, [], [], "sideways", 1e-6, 1e-6)
    with pytest.raises(RuntimeError, match="needs the K/V buffers"):
        fused.dit_blocks(x, one, None, 0, w, cos, sin, [], [], "outputs", 1e-6, 1e-6)
    with pytest.raises(RuntimeError, match="cos/sin"):
        fused.dit_blocks(x, one, None, 0, w, cos[:3], sin[:3], [], [], "context", 1e-6, 1e-6)
    with pytest.raises(RuntimeError, match="10 weights"):
        fused.dit_blocks(x, one, None, 0, w[:9], cos, sin, [], [], "context", 1e-6, 1e-6)
    table = torch.randn(1, 2, 6, D)
    with pytest.raises(RuntimeError, match="10 weights per block"):
        fused.dit_blocks(x, table, None, 0, w, cos, sin, [], [], "context", 1e-6, 1e-6)
    with pytest.raises(RuntimeError, match="needs the K/V buffers"):
        fused.dit_blocks(x, table, None, 0, w + w, cos, sin, [], [], "outputs", 1e-6, 1e-6)
    with pytest.raises(RuntimeError, match="one K and one V buffer per block"):
        fused.dit_blocks(x, table, None, 0, w + w, cos, sin, [torch.zeros(1)], [], "outputs", 1e-6, 1e-6)


def test_a_failed_build_falls_back_with_one_warning(tmp_path):
    """No usable compiler: available() is False, a warning says why, and the model still runs."""
    code = textwrap.dedent(
        """
        import warnings, torch
        from seedling.kernels import fused
        from seedling.kernels.executor import FusedExecutor
        from seedling.kernels.packed import pack_linears
        from seedling.model.dit import DiT_tiny, UnifiedDiT
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = UnifiedDiT(DiT_tiny()).eval()
            pack_linears(m)
            C, L = m.config.latent_channels, m.config.text_len
            with torch.no_grad():
                for _ in range(2):
                    v = FusedExecutor().forward(m, torch.randn(1, 1, C, 8, 8), torch.rand(1), torch.randn(1, L, 384),
                                                torch.randn(1, 384), "t2i")
        msgs = [str(w.message) for w in caught if "fused DiT blocks unavailable" in str(w.message)]
        assert not fused.available() and len(msgs) == 1, msgs
        assert "compiling" in fused.last_error() and v.shape == (1, 1, C, 8, 8)
        print("ok")
        """
    )
    env = dict(os.environ, CXX="/bin/false", SEEDLING_EXT_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_disabling_by_environment(tmp_path):
    code = "from seedling.kernels import fused; assert not fused.enabled() and not fused.available(); print('ok')"
    env = dict(os.environ, SEEDLING_FUSED="0", SEEDLING_EXT_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    assert not list(tmp_path.iterdir())  # nothing was built


# -- StepPlan -----------------------------------------------------------------------------------
@pytest.mark.parametrize("packed", [True, False])
def test_a_step_plan_gives_the_per_step_results(packed):
    m = packed_model() if packed else UnifiedDiT(DiT_tiny()).eval()
    if not packed:
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, t, d, st, po, refs = inputs(m, N=2)
    steps = [(1.0, 0.25), (0.75, 0.25), (0.625, 0.125), (0.25, 0.25)]
    cache = EX.encode_context(m, st, po, "compose", refs)
    want_cached = EX.forward_cached(m, x, t, cache, d)
    want_full = EX.forward(m, x, t, st, po, "compose", refs, d=d)
    cache.plan = plan_steps(m, cache.cond, steps, weights=cache.weights)
    cond, c_ctx, _ = m.conditions("compose", po, None, None)
    plan = plan_steps(m, cond, steps, c_ctx=c_ctx)
    assert cache.plan.step(t, d) is not None and plan.step(t, d) is not None and plan.ctx_table is not None
    assert rel(EX.forward_cached(m, x, t, cache, d), want_cached) < 1e-5
    assert rel(EX.forward(m, x, t, st, po, "compose", refs, d=d, plan=plan), want_full) < 1e-5
    # a step the plan does not hold is computed on the spot
    t2 = torch.full_like(t, 0.3)
    assert cache.plan.step(t2, d) is None
    assert rel(EX.forward(m, x, t2, st, po, "compose", refs, d=d, plan=plan),
               EX.forward(m, x, t2, st, po, "compose", refs, d=d)) < 1e-6
    with torch.enable_grad():
        assert plan.step(t, d) is None  # planned without gradients: never used with them


@needs_compiler
def test_bench_cache_times_both_block_kinds_and_checks_equality(tmp_path):
    """bench/bench_cache.py end to end (random default-config weights, 2 steps, 1 repeat)."""
    import json

    from bench import bench_cache

    out = tmp_path / "bench.json"
    bench_cache.main(["--model", str(tmp_path / "none"), "--refs", "1", "--steps", "2", "--repeats", "1",
                      "--linear", "packed", "--blocks", "fused,python", "--guidance", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["blocks"] for r in rows] == ["fused", "python"]
    assert all(r["max_rel_diff"] < 1e-4 and r["speedup"] > 0 for r in rows)
    assert fused.enabled()  # the benchmark leaves the switch as it found it


def test_bench_attention_checks_the_math_path_against_sdpa(tmp_path):
    import json

    from bench import bench_attention

    out = tmp_path / "att.json"
    bench_attention.main(["--repeats", "1", "--batches", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == len(bench_attention.SHAPES)
    assert all(r["max_abs_diff"] < 1e-5 and r["flash_us"] > 0 and r["math_us"] > 0 for r in rows)
    if fused.available():
        assert all(r["tile_us"] > 0 for r in rows)


@needs_compiler
@pytest.mark.parametrize("rows,K,N", [(1, 48, 128), (64, 256, 768), (70, 256, 1024), (130, 1024, 256), (5, 32, 16)])
@pytest.mark.parametrize("gelu", [False, True])
def test_panel_linear_equals_f_linear(rows, K, N, gelu):
    import torch.nn.functional as F

    assert fused.available()
    g = torch.Generator().manual_seed(rows + K + N)
    x, w, b = torch.randn(2, rows, K, generator=g), torch.randn(N, K, generator=g) * 0.1, torch.randn(N, generator=g)
    want = F.linear(x, w, b)
    if gelu:
        want = F.gelu(want, approximate="tanh")
    got = fused.panel_linear(x, fused.pack_panels(w), b, gelu)
    assert got.shape == want.shape and rel(got, want) < 1e-5


def test_panel_packing_layout_and_widths():
    w = torch.arange(12 * 5, dtype=torch.float32).reshape(12, 5)  # N = 12 outputs: no usable width
    assert fused.pack_panels(w) is None
    w = torch.randn(1024, 8)
    p = fused.pack_panels(w)
    assert p.shape == (8, 8, 128) and torch.equal(p[3, :, 5], w[3 * 128 + 5])  # panel j, column c = output j*nb + c
    assert fused.panel_width(768) == 64 and fused.panel_width(256) == 64 and fused.panel_width(48) == 16


def test_panel_copies_follow_weight_edits():
    lin = packed_model().blocks[0].qkv
    first = fused.panel_weight(lin)
    assert fused.panel_weight(lin) is first  # kept between calls
    lin.weight.add_(1.0)
    again = fused.panel_weight(lin)
    assert again is not first and torch.equal(again, fused.pack_panels(lin.weight))


@needs_compiler
def test_bench_panel_linear_runs_and_agrees(tmp_path):
    import json

    from bench import bench_panel_linear

    out = tmp_path / "lin.json"
    bench_panel_linear.main(["--rows", "3", "--repeats", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["layer"] for r in rows] == [name for name, *_ in bench_panel_linear.LAYERS]
    assert all(r["max_abs_diff"] < 1e-4 and r["panels_us"] > 0 for r in rows)


@needs_compiler
def test_resolved_block_weights_follow_edits_swaps_and_hooks():
    from seedling.kernels.packed import refresh_packed

    m = packed_model()
    blk = m.blocks[0]
    w = block_weights(blk)
    assert block_weights(blk) is w  # remembered
    blk.proj.bias.add_(1.0)  # in-place edit: version counter
    w2 = block_weights(blk)
    assert w2 is not w and torch.equal(w2[5], blk.proj.bias)
    blk.mlp[2].weight = torch.nn.Parameter(blk.mlp[2].weight.detach() * 2, requires_grad=False)  # a new parameter
    w3 = block_weights(blk)
    assert w3 is not w2 and torch.equal(w3[8], fused.pack_panels(blk.mlp[2].weight))
    h = blk.k_norm.register_forward_hook(lambda mod, inp, out: out)
    assert block_weights(blk) is None  # a hook: the Python block runs
    h.remove()
    w4 = block_weights(blk)
    assert w4 is not None
    with torch.no_grad():
        blk.qkv.weight.data.mul_(3)  # behind the version counter's back ...
    assert block_weights(blk) is w4
    refresh_packed(m)  # ... which refresh_packed is for
    assert torch.equal(block_weights(blk)[0], fused.pack_panels(blk.qkv.weight))
    blk.mlp[1] = torch.nn.GELU()  # exact GELU: not the one the C++ block computes
    assert block_weights(blk) is None


@needs_compiler
@pytest.mark.parametrize("B,L,n_ctx", [(1, 160, 96), (2, 352, 288), (1, 70, 0), (2, 130, 1), (1, 200, 199)])
def test_tile_attention_equals_masked_sdpa(B, L, n_ctx):
    import torch.nn.functional as F

    from seedling.kernels.attention import structured_mask

    assert fused.available()
    g = torch.Generator().manual_seed(L + n_ctx)
    q, k, v = (torch.randn(B, 4, L, 32, generator=g) for _ in range(3))
    mask = structured_mask(n_ctx, L) if n_ctx else None
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert rel(fused.attention(q, k, v, n_ctx), want) < 1e-5
