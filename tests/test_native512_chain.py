"""scripts/native512.sh: the native-size chain (autoencoder, DiT on its latents from the 128 px
DiT, harness at the native size) runs end to end on tiny settings and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seedling.model.autoencoder import AE_CONFIGS, Autoencoder

ROOT = Path(__file__).resolve().parents[1]


def _run(env: dict) -> subprocess.CompletedProcess:
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return subprocess.run(["bash", str(ROOT / "scripts" / "native512.sh")], check=False, cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PATH": path, "OMP_NUM_THREADS": "1", **env}, timeout=600)


@pytest.mark.slow  # ~80 s of subprocesses; test_train's native 512 test covers the DiT stage in the default run
def test_the_chain_runs_on_tiny_settings_and_evaluates_at_the_native_size(tmp_path):
    from seedling.model import train

    torch.manual_seed(0)  # a 128 px tiny pipeline to start from
    Autoencoder(AE_CONFIGS["tiny"]).save_pretrained(tmp_path / "ae8")
    train.main(["--ae", str(tmp_path / "ae8"), "--config", "tiny", "--token-budget", "300", "--threads", "1",
                "--out", str(tmp_path / "base"), "--stop-after", "1", "--export", str(tmp_path / "init")])
    runs = tmp_path / "runs"
    env = {"RUNS": str(runs), "INIT": str(tmp_path / "init"), "SIZE": "256", "WORKERS": "1",
           "AE_ARGS": "--config tiny-f32 --batch 2 --crop 32 --size 128 --stop-after 2 --threads 1",
           "DIT_ARGS": "--token-budget 300 --max-batch 4 --stop-after 1 --threads 1 --no-icon-rasters",
           "EVAL_ARGS": "--suites shapes_1 --limit 2 --steps 1"}
    done = _run(env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== 3. harness at 256 px" in done.stdout
    metrics = json.loads(next((runs / "eval").glob("*.json")).read_text())
    assert metrics
    assert json.loads((runs / "dit" / "export" / "pipeline.json").read_text())["default_size"] == 256
    # a second call goes on from the checkpoints
    again = _run({**env, "DIT_MIN": "0"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed" in again.stdout + again.stderr


def test_the_dit_stage_without_an_autoencoder_says_what_to_run_first(tmp_path):
    done = _run({"RUNS": str(tmp_path / "none"), "AE_MIN": "0"})
    assert done.returncode == 2 and "run stage 1 first" in done.stderr
