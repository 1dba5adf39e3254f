"""Shared fixtures for the app tests: temporary settings, in-memory Huey, services, a tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# The default run is spread over pytest-xdist processes (pyproject's addopts). Each process, and
# every app or worker it starts, computes on one thread: with two processes on two cores, two
# OpenMP threads each would wait on each other whenever one is descheduled.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# The modules that take longest in the default run, longest first (each 45 s or more under two
# processes; measured with --durations=0). pytest-xdist hands out whole modules in collection order
# (pyproject: --dist loadscope --no-loadscope-reorder), so the long ones start at once and the short
# ones fill in around them, instead of one process waiting alone on a long module at the end. A
# name missing or out of date here only costs time.
LONG_MODULES_FIRST = (
    "test_ui_loop_browser",
    "test_crash_points",
    "test_app",
    "test_ui_actions_browser",
    "test_history_browser",
    "test_default_model",
    "test_compose_boxes_browser",
    "test_reliability_process",
    "test_ui_browser",
    "test_install",
    "test_captions",
    "test_train",
    "test_prompt_expansion_app",
    "test_eval_detectors",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_MODULES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each module keeps its order


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): two processes, or fewer where fewer cores are ours. The slow
    checks (`-m slow`) run in this process alone: their load, memory and soak measurements assume
    the machine to themselves. SEEDLING_TEST_PROCESSES sets another count (0: this process alone)."""
    if "SEEDLING_TEST_PROCESSES" in os.environ:
        return int(os.environ["SEEDLING_TEST_PROCESSES"])
    marks = config.getoption("markexpr") or ""
    if "slow" in marks and "not slow" not in marks:
        return 0
    return min(2, len(os.sched_getaffinity(0)))

from seedling.backend.context import STEP_DELAY_ENV
from seedling.backend.huey_app import make_memory_huey
from seedling.backend.services import Services, build_services
from seedling.backend.settings import Settings


def execute_next(huey):
    """Run the next queued task in this process (huey's tests/base.py idiom); None if none."""
    task = huey.dequeue()
    return huey.execute(task) if task is not None else None


def drain(huey) -> int:
    """Run queued tasks until the queue is empty; returns how many ran."""
    ran = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight tiny model saved to a folder, as the app loads it."""
    from seedling.model.pipeline import SeedlingPipeline

    folder = tmp_path_factory.mktemp("tiny-model")
    SeedlingPipeline.from_config("tiny", seed=0).save_pretrained(str(folder))
    return folder


@pytest.fixture
def settings(tmp_path, tiny_model_dir) -> Settings:
    return Settings(data_dir=tmp_path / "data", model_path=tiny_model_dir, max_queue=3)


@pytest.fixture(scope="session")
def shared_model_host_loader(tiny_model_dir):
    """Load the tiny model once per test session; every test's ModelHost shares it (read-only)."""
    from seedling.backend.model_host import load_pipeline

    cache: dict = {}

    def loader(path, device, quantize):
        key = (str(path), device, quantize)
        if key not in cache:
            cache[key] = load_pipeline(path, device, quantize)
        return cache[key]

    return loader


@pytest.fixture
def services(settings, shared_model_host_loader) -> Services:
    """Services on a temporary data folder with a MemoryHuey: run jobs with execute_next/drain."""
    svc = build_services(settings, huey=make_memory_huey(), loader=shared_model_host_loader)
    yield svc
    svc.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`python app.py` as a child process on a free localhost port (start, wait until it answers,
    stop with SIGTERM as a user's Ctrl-C would)."""

    def __init__(
        self, data_dir: Path, model_dir: Path, *extra: str, step_delay_s: float = 0.0, env: dict | None = None
    ):
        self.env = env or {}  # more environment for the app and its worker (fault injection)
        self.data_dir = data_dir
        self.model_dir = model_dir
        self.extra = extra
        self.step_delay_s = step_delay_s  # the worker sleeps this long per step (crash tests)
        self.proc = None
        self.port = None
        self.log_path = data_dir.parent / f"{data_dir.name}-app.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 120.0) -> AppProcess:
        import subprocess
        import sys
        import time
        import urllib.error
        import urllib.request

        self.port = free_port()
        cmd = [
            sys.executable,
            "app.py",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--model",
            str(self.model_dir),
            *self.extra,
        ]
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "GRADIO_ANALYTICS_ENABLED": "False",
                    "NO_PROXY": "127.0.0.1,localhost",
                    STEP_DELAY_ENV: str(self.step_delay_s),
                    **self.env,
                },
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=2) as r:
                    if r.status == 200:
                        return self
            except urllib.error.HTTPError as err:
                if err.code == 401:  # started with --auth: it answers, behind the login
                    return self
                time.sleep(0.5)
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app did not answer in {timeout_s} s:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        """Live worker processes this app started (found by their --parent-pid flag)."""
        if self.proc is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
                state = (entry / "stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue
            if b"seedling.backend.worker" in args and str(self.proc.pid).encode() in args and state != "Z":
                pids.append(int(entry.name))
        return pids

    def stop(self, timeout_s: float = 30.0) -> int | None:
        import signal
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


@pytest.fixture(scope="session")
def trainable_model_dir(tmp_path_factory) -> Path:
    """A tiny model whose every weight is random: the zero-initialised output layer of a fresh
    DiT would give a LoRA zero gradients, so fine-tuning tests could not see any change."""
    import torch

    from seedling.model.pipeline import SeedlingPipeline

    pipe = SeedlingPipeline.from_config("tiny", seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pipe.dit.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    folder = tmp_path_factory.mktemp("tiny-trainable")
    pipe.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def trainable_loader(trainable_model_dir, shared_model_host_loader):
    """Loads each model once per session (shared, as a warm worker keeps it): the same per-path
    cache as `shared_model_host_loader`."""
    return shared_model_host_loader


SECURED_AUTH = ("fuzz", "a-long-test-password")
SECURED_MAX_UPLOAD_MB = 1


@pytest.fixture(scope="session")
def secured_app(tmp_path_factory, tiny_model_dir):
    """One `python app.py --auth ... --max-upload-mb 1` per session (tiny model, 127.0.0.1), shared
    by the security and the API fuzz tests: starting an app costs ~15 s on this machine."""
    auth = ":".join(SECURED_AUTH)
    proc = AppProcess(
        tmp_path_factory.mktemp("secured") / "data",
        tiny_model_dir,
        "--auth",
        auth,
        "--max-upload-mb",
        str(SECURED_MAX_UPLOAD_MB),
    ).start()
    yield proc
    proc.stop()
