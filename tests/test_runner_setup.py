"""How the test run itself is spread over processes (tests/conftest.py, pyproject's addopts)."""

from __future__ import annotations

import os
from types import SimpleNamespace

from tests import conftest


def _config(markexpr: str):
    return SimpleNamespace(getoption=lambda name: {"markexpr": markexpr}[name])


def test_every_module_named_to_run_first_exists():
    """A renamed module would silently lose its early start."""
    here = conftest.REPO_ROOT / "tests"
    missing = [name for name in conftest.LONG_MODULES_FIRST if not (here / f"{name}.py").exists()]
    assert not missing, f"LONG_MODULES_FIRST names modules that are gone: {missing}"
    assert len(set(conftest.LONG_MODULES_FIRST)) == len(conftest.LONG_MODULES_FIRST)


def test_the_default_run_uses_two_processes_and_the_slow_checks_one(monkeypatch):
    monkeypatch.delenv("SEEDLING_TEST_PROCESSES", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert conftest.pytest_xdist_auto_num_workers(_config("not slow")) == min(2, cores)
    assert conftest.pytest_xdist_auto_num_workers(_config("slow")) == 0
    assert conftest.pytest_xdist_auto_num_workers(_config("")) == min(2, cores)
    monkeypatch.setenv("SEEDLING_TEST_PROCESSES", "3")
    assert conftest.pytest_xdist_auto_num_workers(_config("slow")) == 3


def test_long_modules_are_collected_first_and_keep_their_order():
    names = ["test_rope", "test_app", "test_dit", "test_crash_points"]
    items = [SimpleNamespace(path=conftest.REPO_ROOT / "tests" / f"{n}.py", i=i) for i, n in enumerate(names)]
    items.append(SimpleNamespace(path=conftest.REPO_ROOT / "tests" / "test_app.py", i=4))
    conftest.pytest_collection_modifyitems(None, items)
    assert [(it.path.stem, it.i) for it in items] == [
        ("test_crash_points", 3), ("test_app", 1), ("test_app", 4), ("test_rope", 0), ("test_dit", 2)
    ]
