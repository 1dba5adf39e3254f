"""Issue 21: exactly once under kills at every commit point of a job, on the SQLite queue (the
app's supervised worker) and on Redis with three workers, one of them killed repeatedly.
The default run does a few kills of each kind; `-m slow` runs the full counts (50 jobs each)."""

from __future__ import annotations

import shutil

import pytest

from scripts import crash_suite as cs
from seedling.backend.faults import CRASH_POINTS


def assert_exactly_once(result: dict) -> None:
    assert result["lost"] == 0 and result["succeeded"] == result["jobs"], result
    assert result["two_sets_of_outputs"] == result["wrong_outputs"] == 0, result
    files = result["files"]
    assert files["hash_mismatch_or_missing"] == files["rows_pointing_at_temp_files"] == 0, files
    assert files["orphan_files"] == files["temp_files_left"] == 0, files


needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def test_worker_killed_at_every_commit_point_runs_each_job_exactly_once(tmp_path, tiny_model_dir):
    result = cs.run_app_suite(tmp_path, tiny_model_dir, n_jobs=len(CRASH_POINTS), timeout_s=300)
    assert_exactly_once(result)
    assert result["kills"] == len(CRASH_POINTS) and all(result["kills_by_point"].values()), result


@needs_redis
def test_three_workers_on_redis_one_killed_repeatedly_lose_nothing(tmp_path, tiny_model_dir):
    result = cs.run_redis_suite(tmp_path, tiny_model_dir, n_jobs=8, timeout_s=300)
    assert_exactly_once(result)
    assert result["kills"] >= 1, result  # the victim took at least one job and died on it


@pytest.mark.slow
def test_crash_suite_full_counts(tmp_path, tiny_model_dir):
    app = cs.run_app_suite(tmp_path, tiny_model_dir, n_jobs=50, timeout_s=1200)
    assert_exactly_once(app)
    assert app["kills"] == 50
    if shutil.which("redis-server") is not None:
        redis = cs.run_redis_suite(tmp_path, tiny_model_dir, n_jobs=150, timeout_s=1200, step_delay_s=0.5)
        assert_exactly_once(redis)
