"""The app as a user runs it: `python app.py` on a free localhost port with a tiny saved model,
driven through gradio_client; the worker is a supervised child; a restart keeps history intact."""

from __future__ import annotations

import os
import signal
import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from seedling.backend.parameters import restore_parameters
from seedling.storage.db import Database
from seedling.storage.files import sha256_file
from seedling.storage.images_sqlite import SqliteImageStore
from seedling.storage.jobs_sqlite import SqliteJobStore
from seedling.storage.pngmeta import read_parameters
from tests.conftest import AppProcess


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model_dir):
    # 50 ms per step: the 40-step job below lasts 2 s however fast the CPU (it was 0.5 s in CI,
    # and the kill came after it had finished)
    proc = AppProcess(tmp_path_factory.mktemp("app") / "data", tiny_model_dir, step_delay_s=0.05).start()
    yield proc
    proc.stop()


def _client(app: AppProcess) -> Client:
    return Client(app.url, verbose=False)


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _history(app: AppProcess):
    db = Database(app.data_dir / "history.db")
    try:
        return SqliteImageStore(db).all(), SqliteJobStore(db).list()
    finally:
        db.dispose()


def test_gradio_client_generate_returns_an_image(app):
    client = _client(app)
    status, _preview, gallery = client.predict(
        prompt="a red fox",
        width=128,
        height=128,
        steps=4,
        guidance=0,
        seed=5,
        num_outputs=1,
        api_name="/generate",
    )
    assert "done" in status and len(gallery) == 1
    with Image.open(gallery[0]["image"]) as png:
        assert png.size == (128, 128)
        restored = restore_parameters(read_parameters(png))
    assert (restored.prompt, restored.seed, restored.steps) == ("a red fox", 5, 4)
    job_id = int(status.split()[1].rstrip(":"))
    info = client.predict(job_id, api_name="/job_status")
    assert info["status"] == "succeeded" and info["timings"]["submit_to_saved"] > 0
    found = client.predict(text="fox", api_name="/history_search")
    assert len(found) == 1


def test_invalid_input_is_a_readable_error(app):
    with pytest.raises(AppError, match="multiple of 16"):
        _client(app).predict(
            prompt="fox",
            width=120,
            height=128,
            steps=1,
            guidance=0,
            seed=1,
            num_outputs=1,
            api_name="/generate",
        )


def test_worker_killed_mid_job_is_restarted_and_the_job_completes(app):
    client = _client(app)
    (worker,) = _wait_for(app.worker_pids, 30, "the worker")
    pending = client.submit(
        prompt="a slow owl",
        width=128,
        height=128,
        steps=40,
        guidance=0,
        seed=3,
        num_outputs=1,
        api_name="/generate",
    )
    db = Database(app.data_dir / "history.db")
    jobs = SqliteJobStore(db)
    running = _wait_for(
        lambda: [j for j in jobs.list() if j.status == "running" and j.progress_step >= 1], 60, "a step done"
    )
    os.kill(worker, signal.SIGKILL)
    status, _preview, gallery = pending.result(timeout=180)
    assert "done" in status and len(gallery) == 1
    job = jobs.get(running[0].id)
    db.dispose()
    assert job.status == "succeeded" and job.attempts == 2
    assert app.worker_pids() and worker not in app.worker_pids()


def test_restart_keeps_history_and_files(app):
    client = _client(app)
    client.predict(
        prompt="two cats",
        width=128,
        height=128,
        steps=1,
        guidance=0,
        seed=8,
        num_outputs=2,
        api_name="/generate",
    )
    images, jobs = _history(app)
    hashes = {im.id: im.sha256 for im in images}
    assert len(images) >= 3
    assert app.stop() == 0
    assert app.worker_pids() == []  # the worker stopped with the app

    app.start()
    images_after, jobs_after = _history(app)
    assert {im.id: im.sha256 for im in images_after} == hashes
    assert [(j.id, j.status) for j in jobs_after] == [(j.id, j.status) for j in jobs]
    for im in images_after:
        assert sha256_file(app.data_dir / "files" / im.file_path) == im.sha256
    client = _client(app)
    assert len(client.predict(text="cats", api_name="/history_search")) == 2
    status, _preview, _gallery = client.predict(
        prompt="after restart",
        width=128,
        height=128,
        steps=1,
        guidance=0,
        seed=1,
        num_outputs=1,
        api_name="/generate",
    )
    assert "done" in status


def test_share_requires_auth_or_prints_a_generated_password_once(capsys):
    from seedling.app import SHARE_USER, resolve_auth

    assert resolve_auth(None, share=False) is None
    assert resolve_auth("ann:s3cret:with:colons", share=True) == ("ann", "s3cret:with:colons")
    user, password = resolve_auth(None, share=True)
    out = capsys.readouterr().out
    assert user == SHARE_USER and len(password) >= 12 and out.count(password) == 1
    with pytest.raises(SystemExit, match="user:password"):
        resolve_auth("no-colon", share=False)
