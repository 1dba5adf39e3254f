"""bench/cache_overhead.py runs end to end and its arithmetic is the table's."""

import importlib.util
import json

from tests.conftest import REPO_ROOT


def test_cache_overhead_runs_and_writes_json(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("cache_overhead", REPO_ROOT / "bench" / "cache_overhead.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "overhead.json"
    bench.main(["--model", str(tmp_path / "none"), "--refs", "1", "--batch", "1", "--repeats", "2",
                "--threads", "1", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["model"] == "random default config" and len(d["rows"]) == 1
    r = d["rows"][0]
    ms, floor = r["ms"], r["floor_ms"]
    assert all(ms[k] > floor[k] > 0 for k in ("cached", "uncached", "encode"))
    assert abs(r["speedup"] - 8 * ms["uncached"] / (8 * ms["cached"] + ms["encode"])) < 1e-9
    net = {k: ms[k] - floor[k] for k in ms}
    assert abs(r["speedup_without_floor"] - 8 * net["uncached"] / (8 * net["cached"] + net["encode"])) < 1e-9
    assert abs(r["token_limit"] - 8 * (64 + 32 + 64) / (64 + 32 + 8 * 64)) < 1e-9
    assert "| 1 | 1 |" in capsys.readouterr().out


def test_narrow_twin_keeps_the_structure():
    spec = importlib.util.spec_from_file_location("cache_overhead", REPO_ROOT / "bench" / "cache_overhead.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from seedling.model.dit import DiT_default, UnifiedDiT

    dit = UnifiedDiT(DiT_default())
    twin = bench.narrow_twin(dit, "plain")
    assert twin.config.depth == dit.config.depth and twin.dims.head_dim == dit.dims.head_dim
    assert twin.config.width == dit.dims.head_dim and twin.config.heads == 1
    assert twin.num_parameters() < dit.num_parameters() / 10  # 0.7M of 10.2M, mostly the 384-wide text inputs
