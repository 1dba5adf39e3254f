"""bench/bench_large.py runs end to end (tiny config, CPU) and writes the rows it prints."""

import importlib.util
import json

from tests.conftest import REPO_ROOT


def test_bench_large_runs_and_writes_json(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_large", REPO_ROOT / "bench" / "bench_large.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "large.json"
    bench.main(["--config", "tiny", "--size", "64", "--device", "cpu", "--dtype", "fp32", "--refs", "1,2",
                "--repeats", "1", "--out", str(out)])
    d = json.loads(out.read_text())
    assert d["config"] == "tiny" and d["image_tokens"] == 16 and d["dtype"] == "fp32"
    kinds = [r["kind"] for r in d["rows"]]
    assert kinds == ["step", "step", "image", "image", "cache", "cache"]
    assert all(r["ms"] > 0 for r in d["rows"])
    for r in d["rows"][4:]:
        assert r["max_rel_diff"] <= 1e-4  # cache on and off give the same latents in fp32
        assert 1 < r["token_limit"] < 8
    assert "| compose, 2 refs, 8 steps, cache on / off |" in capsys.readouterr().out
