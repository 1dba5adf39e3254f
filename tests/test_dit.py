"""Invariants of the unified DiT (tiny config, random weights perturbed away from the zero init
so every path carries signal)."""

import pytest
import torch

from seedling.model.dit import DiT_configs, DiT_tiny, UnifiedDiT


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():  # scoped: a global switch would leak into other test files
        yield


def perturbed_model(seed=0):
    torch.manual_seed(seed)
    m = UnifiedDiT(DiT_tiny()).eval().requires_grad_(False)
    with torch.no_grad():
        for p in m.parameters():  # zero-init adaLN/output layers would make outputs trivially equal
            p.add_(torch.randn_like(p) * 0.05)
    return m


def inputs(m, B=2, M=1, N=0, h=16, w=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    C, L = m.config.latent_channels, m.config.text_len
    x = torch.randn(B, M, C, h, w, generator=g)
    t = torch.rand(B, generator=g)
    d = torch.rand(B, generator=g) * 0.25
    st = torch.randn(B, L, 384, generator=g)
    po = torch.randn(B, 384, generator=g)
    refs = [torch.randn(B, C, h, w, generator=g) for _ in range(N)]
    return x, t, d, st, po, refs


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


@pytest.fixture(scope="module")
def model():
    return perturbed_model()


def test_context_unchanged_when_outputs_change(model):
    x, t, d, st, po, refs = inputs(model, M=2, N=2)
    v1, h1 = model(x, t, st, po, "compose", refs, d=d, return_context=True)
    v2, h2 = model(torch.randn_like(x), torch.rand_like(t), st, po, "compose", refs, d=d * 0, return_context=True)
    assert not torch.allclose(v1, v2)
    assert torch.equal(h1, h2), "context tokens must not see outputs or the timestep"


@pytest.mark.parametrize("N", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("M", [1, 2, 3, 4])
def test_cached_equals_uncached(model, N, M):
    x, t, d, st, po, refs = inputs(model, M=M, N=N, seed=N * 10 + M)
    masks = [torch.rand(2, 1, 16, 16).round() for _ in refs] if N else None
    v_full = model(x, t, st, po, "compose", refs, masks, d=d)
    cache = model.encode_context(st, po, "compose", refs, masks)
    for step in range(3):  # the same cache serves every step
        t_s = t * (1 - step / 3)
        v_full = model(x, t_s, st, po, "compose", refs, masks, d=d)
        v_cached = model.forward_cached(x, t_s, cache, d=d)
        assert rel(v_cached, v_full) <= 1e-4


def test_dense_and_split_attention_agree(model):
    x, t, d, st, po, refs = inputs(model, M=2, N=2)
    a = model(x, t, st, po, "edit", refs, d=d, backend="dense")
    b = model(x, t, st, po, "edit", refs, d=d, backend="split")
    assert rel(a, b) <= 1e-5


def test_reference_order_matters_only_through_index(model):
    x, t, d, st, po, refs = inputs(model, N=3)
    idx = [16, 17, 18]
    base = model(x, t, st, po, "compose", refs, ref_indices=idx)
    perm = [2, 0, 1]
    same = model(x, t, st, po, "compose", [refs[i] for i in perm], ref_indices=[idx[i] for i in perm])
    assert rel(same, base) <= 1e-5, "permuting images together with their indices must not change anything"
    swapped = model(x, t, st, po, "compose", [refs[i] for i in perm], ref_indices=idx)
    assert rel(swapped, base) > 1e-3, "the index axis must tell references apart"


def test_references_do_not_depend_on_number_of_outputs(model):
    _, _, _, st, po, refs = inputs(model, N=2)
    c1 = model.encode_context(st, po, "storyboard", refs)
    c2 = model.encode_context(st, po, "storyboard", refs)
    for (k1, v1), (k2, v2) in zip(c1.kv, c2.kv):
        assert torch.equal(k1, k2) and torch.equal(v1, v2)


def test_outputs_attend_to_each_other(model):
    x, t, d, st, po, _ = inputs(model, M=2)
    v = model(x, t, st, po, "storyboard")
    x2 = x.clone()
    x2[:, 1] = torch.randn_like(x2[:, 1])
    v2 = model(x2, t, st, po, "storyboard")
    assert rel(v2[:, 0], v[:, 0]) > 1e-4, "panel 0 must see panel 1"


def test_task_and_timestep_condition_the_output(model):
    x, t, d, st, po, _ = inputs(model)
    a = model(x, t, st, po, "t2i")
    assert rel(model(x, t, st, po, "style"), a) > 1e-4
    assert rel(model(x, t * 0.5, st, po, "t2i"), a) > 1e-4
    assert rel(model(x, t, st, po, "t2i", d=torch.full_like(t, 0.5)), a) > 1e-4


@pytest.mark.parametrize("hw", [(16, 16), (8, 24), (24, 8), (12, 20)])
def test_aspect_ratios(model, hw):
    x, t, d, st, po, refs = inputs(model, h=hw[0], w=hw[1], N=1)
    v = model(x, t, st, po, "edit", refs)
    assert v.shape == x.shape
    assert rel(model.forward_cached(x, t, model.encode_context(st, po, "edit", refs)), v) <= 1e-4


def test_unknown_task_and_mask_count_errors(model):
    x, t, d, st, po, refs = inputs(model, N=2)
    with pytest.raises(ValueError, match="unknown task"):
        model(x, t, st, po, "paint", refs)
    with pytest.raises(ValueError, match="masks"):
        model(x, t, st, po, "compose", refs, [torch.zeros(2, 1, 16, 16)])


def test_save_load_roundtrip_exact(model, tmp_path):
    model.save_pretrained(tmp_path)
    m2 = UnifiedDiT.from_pretrained(tmp_path)
    for (k, a), (_, b) in zip(model.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    x, t, d, st, po, _ = inputs(model)
    assert torch.equal(model(x, t, st, po, "t2i"), m2(x, t, st, po, "t2i"))


def test_large_config_builds_on_meta():
    with torch.device("meta"):
        m = UnifiedDiT(DiT_configs["large"]())
    assert m.num_parameters() > 1e9


def test_default_config_size():
    m = UnifiedDiT(DiT_configs["default"]())
    assert 5e6 < m.num_parameters() < 20e6


def test_with_tasks_adds_control_tasks_and_keeps_every_old_task_exact():
    """A trained model learns new tasks from its own weights: the old tasks keep their ids and give
    the same outputs; a new task starts from the edit task's embedding (so, untrained, it acts as
    an edit of its control picture); more tasks than spare rows grow the embedding."""
    from dataclasses import replace

    torch.manual_seed(0)
    cfg = replace(DiT_tiny(), tasks=("t2i", "edit", "inpaint", "compose", "storyboard", "style"), num_tasks=8)
    old = UnifiedDiT(cfg).eval()
    for p in old.parameters():
        p.add_(torch.randn_like(p) * 0.05)
    new = old.with_tasks(["edges", "sketch", "colourise", "upscale"]).eval()
    assert new.dims.tasks[:6] == old.dims.tasks and new.dims.tasks[6:] == ("edges", "sketch", "colourise", "upscale")
    assert new.dims.num_tasks == 10 and new.task_embed.weight.shape[0] == 10
    x, t, d, st, po, refs = inputs(old, N=1)
    for task in ("t2i", "edit", "compose"):
        r = [] if task == "t2i" else refs
        assert torch.equal(old(x, t, st, po, task, r, d=d), new(x, t, st, po, task, r, d=d)), task
    assert torch.equal(new(x, t, st, po, "edges", refs, d=d), old(x, t, st, po, "edit", refs, d=d))
    assert new.with_tasks(["edges"]).dims.tasks == new.dims.tasks  # known tasks: nothing added
    with pytest.raises(ValueError, match="unknown task"):
        old.with_tasks(["outpaint"])
    with pytest.raises(ValueError, match="unknown task 'edges'; the model knows"):
        old(x, t, st, po, "edges", refs, d=d)


def test_a_new_model_knows_every_task_of_the_table():
    from seedling.model.task_table import TASK_NAMES

    m = UnifiedDiT(DiT_tiny())
    assert m.dims.tasks == TASK_NAMES and m.task_embed.weight.shape[0] >= len(TASK_NAMES)
    with pytest.raises(ValueError, match="do not fit"):
        UnifiedDiT(DiT_tiny().__class__(**{**DiT_tiny().to_dict(), "num_tasks": 4}))
