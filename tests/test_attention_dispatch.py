"""One attention entry point: backends with constraints that are checked, explicit or automatic
choice, no silent fallback; and no import cycle in seedling.kernels / seedling.model."""

import ast
from pathlib import Path

import pytest
import torch

from seedling.kernels.attention import attention, available_backends, choose_backend, get_backend
from seedling.model.dit import DiT_tiny, UnifiedDiT

ROOT = Path(__file__).resolve().parents[1] / "seedling"


def qkv(L=12, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 2, L, 16, generator=g).to(dtype) for _ in range(3)]


def test_constraints_are_checked():
    q, k, v = qkv()
    assert choose_backend(q).name == "split"  # "flex" first in the automatic order, but CUDA only
    with pytest.raises(ValueError, match="'flex' cannot run here: it runs on cuda, not cpu"):
        attention(q, k, v, 4, "flex")
    with pytest.raises(ValueError, match="not for the cached path"):
        choose_backend(q, "none", cached=True, backend="split")
    with pytest.raises(ValueError, match="does not compute the 'structured' mask"):
        choose_backend(q, "structured", cached=True, backend="sdpa-cached")
    with pytest.raises(ValueError, match="does not take torch.int64"):
        choose_backend(q.long(), backend="dense")
    with pytest.raises(ValueError, match="unknown attention backend 'fast'"):
        get_backend("fast")
    assert [n for n, b in available_backends().items() if b.fused_blocks] == ["split"]


def test_backends_agree():
    q, k, v = qkv()
    for n_ctx in (0, 5):
        ref = attention(q, k, v, n_ctx, "dense")
        assert torch.allclose(attention(q, k, v, n_ctx, "split"), ref, atol=1e-6)
        assert torch.allclose(attention(q, k, v, n_ctx, None), ref, atol=1e-6)
    out = attention(q[:, :, 5:], k, v, 5, cached=True)  # outputs only, keys [context ; outputs]
    assert torch.allclose(out, attention(q, k, v, 5, "dense")[:, :, 5:], atol=1e-6)
    with pytest.raises(ValueError, match="'split' cannot run here: it is not for the cached path"):
        attention(q[:, :, 5:], k, v, 5, "split", cached=True)


def test_the_model_refuses_a_backend_that_cannot_run():
    model = UnifiedDiT(DiT_tiny()).eval()
    x = torch.randn(1, 1, 4, 4, 4)
    t = torch.full((1,), 0.5)
    st, po = torch.randn(1, 16, 384), torch.randn(1, 384)
    with torch.no_grad(), pytest.raises(ValueError, match="'flex' cannot run here"):
        model(x, t, st, po, "t2i", backend="flex")


def _imports(path: Path, modules) -> set[str]:
    """Every seedling module a file imports, at module level or inside functions (`from package
    import submodule` names the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seedling."):
            subs = {f"{node.module}.{a.name}" for a in node.names} & set(modules)
            found |= subs if len(subs) == len(node.names) else {node.module, *subs}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("seedling.")}
    return found


def test_no_import_cycle_in_model_and_kernels():
    files = {f"seedling.{p.relative_to(ROOT).with_suffix('').as_posix().replace('/', '.')}": p
             for part in ("model", "kernels") for p in (ROOT / part).rglob("*.py")}
    files = {name.removesuffix(".__init__"): p for name, p in files.items()}
    graph = {name: {m for m in _imports(p, files) if m in files and m != name} for name, p in files.items()}
    # the scan sees the real edges (a broken parser would find no cycle because it found nothing)
    assert "seedling.model.dit" in graph["seedling.model.pipeline"], graph["seedling.model.pipeline"]
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path, node, nxt]))
            elif nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])
    assert not cycles, f"import cycles: {cycles}"
