"""The install itself: one import root, no name of ours shadowing a distribution, the lock file.

Regression for the fresh-install break: transformers 5 requires Hugging Face's `kernels`
distribution and imports it; a top-level `kernels/` package of ours, found first from the
repository root, broke the text encoder, peft and diffusers on every fresh install.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = "seedling-studio"

# Runs in a fresh interpreter from a given working directory: what a user's `python app.py` or a
# script of theirs meets at import time.
_PROBE = """
import json, sys
from pathlib import Path
import kernels
from transformers import BertModel
import peft
from diffusers import FluxTransformer2DModel
from seedling.model.pipeline import SeedlingPipeline

pipe = SeedlingPipeline.from_pretrained(sys.argv[1])
image = pipe(prompt="a red circle", task="t2i", seed=0, steps=1).images[0]
print(json.dumps({
    "kernels_file": kernels.__file__,
    "kernels_has_hub_api": hasattr(kernels, "get_kernel"),
    "bert": BertModel.__name__,
    "peft": peft.__version__,
    "flux": FluxTransformer2DModel.__name__,
    "size": list(image.size),
}))
"""


def _root_import_names(root: Path) -> set[str]:
    """Names importable as regular modules or packages from `root` on sys.path (a folder without
    `__init__.py` is a namespace package, which never wins over an installed distribution)."""
    names = {p.stem for p in root.glob("*.py")}
    names |= {p.parent.name for p in root.glob("*/__init__.py")}
    return names


def test_only_seedling_is_importable_from_the_repository_root():
    assert _root_import_names(REPO) == {"app", "seedling"}


def test_no_name_of_ours_is_a_top_level_name_of_an_installed_distribution():
    theirs = {
        name: dists
        for name, dists in md.packages_distributions().items()
        if not any(re.sub(r"[-_.]+", "-", d).lower() == OURS for d in dists)
    }
    clashes = {name: theirs[name] for name in _root_import_names(REPO) if name in theirs}
    assert not clashes, f"these names of ours shadow installed distributions: {clashes}"


def test_the_installed_project_provides_only_the_seedling_package():
    dist = md.distribution(OURS)
    top = {name for name, dists in md.packages_distributions().items() if OURS in dists}
    assert top <= {"seedling"}, top
    scripts = {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
    assert {"seedling-studio", "seedling-worker", "seedling-train", "seedling-finetune"} <= scripts


@pytest.mark.parametrize("where", ["repository root", "another folder"])
def test_pipeline_transformers_peft_and_diffusers_load_with_hf_kernels_installed(where, tmp_path):
    try:
        md.version("kernels")
    except md.PackageNotFoundError:
        pytest.skip("Hugging Face's `kernels` distribution is not installed: there is no clash to test")
    cwd = REPO if where == "repository root" else tmp_path
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # `python -c` puts the working directory first on sys.path, as `python app.py` does.
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(REPO / "assets" / "default")],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(seen["kernels_file"]).resolve().is_relative_to(Path(md.distribution("kernels").locate_file("")))
    assert seen["kernels_has_hub_api"]
    assert seen["size"] == [128, 128]


def test_console_script_runs_from_another_folder(tmp_path):
    exe = shutil.which("seedling-studio", path=str(Path(sys.executable).parent))
    assert exe, "seedling-studio is not installed next to this Python: run scripts/setup.sh"
    proc = subprocess.run([exe, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--model" in proc.stdout and str(REPO / "assets" / "default") in proc.stdout.replace("\n", "")


def test_lock_pins_every_runtime_dependency_exactly():
    lock = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin"
            lock[re.sub(r"[-_.]+", "-", name).lower()] = version
    requires = md.distribution(OURS).requires or []
    for req in requires:
        if "extra ==" in req and "test" not in req:
            continue
        name = re.sub(r"[-_.]+", "-", re.split(r"[ <>=!~;\[]", req, maxsplit=1)[0]).lower()
        assert name in lock, f"{name} (from pyproject.toml) has no pin in constraints.txt"
    assert lock["torch"] == "2.13.0"
