"""bench/bench_icon_phrasings.py: one row per training phrasing of an icon caption, judged as t2i_icons is."""

from __future__ import annotations

import importlib.util
import json

import pytest

from seedling.model.data.captions import icon_caption
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def bench():
    path = REPO_ROOT / "bench" / "bench_icon_phrasings.py"
    spec = importlib.util.spec_from_file_location("bench_icon_phrasings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_phrasings_are_the_four_icon_captions(bench):
    names = bench.phrasing_names()
    assert names == [icon_caption("fox", "animals & nature", None, phrasing=k) for k in range(4)]
    assert len(set(names)) == 4


def test_the_bench_writes_a_row_per_phrasing(bench, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    bench.main(["--model", str(tiny_model_dir), "--n-icons", "4", "--threads", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["phrasing"] for r in rows] == bench.phrasing_names()
    assert all(r["n"] == 4 and 0 <= r["top1"] <= r["top5"] <= 1 for r in rows)
    assert "| 'an emoji of a fox' | 4 |" in capsys.readouterr().out
