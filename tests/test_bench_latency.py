"""seedling.backend.bench_latency: submit -> PNG through the real queue, with each stage's time."""

from __future__ import annotations

import json

from seedling.backend import bench_latency


def test_the_bench_reports_every_stage_at_the_models_default_size(tmp_path):
    out = tmp_path / "latency.json"
    result = bench_latency.main(["--config", "tiny", "--jobs", "2", "--out", str(out)])
    assert result["size"] == 128
    # the worker writes a job's timings after its PNG: the bench waits for them
    assert {"submit_to_png", "queue_wait", "sample", "decode", "save"} <= set(result["summary"])
    assert all("submit_to_saved" in row for row in result["jobs"])
    assert json.loads(out.read_text())["summary"]["sample"]["median"] > 0


def test_the_default_size_is_the_models_own(tmp_path):
    from seedling.model.task_table import native_size_of

    assert native_size_of(tmp_path) == 128  # no pipeline.json: the v1 size
    (tmp_path / "pipeline.json").write_text(json.dumps({"default_size": 512}))
    assert native_size_of(tmp_path) == 512
