"""Issue #7, the process half: kill -9 of the worker and of the app, restarts, load through
gradio_client, a bounded queue, a read-only or full disk, a file half-written when the worker
dies, the worker's memory. Real processes on 127.0.0.1 with the tiny random model.

The checks themselves live in scripts/reliability.py (which prints the table of
docs/reliability.md); here the fast versions run by default and the full counts under `slow`.
"""

from __future__ import annotations

import errno
import os
import sqlite3

import pytest

from scripts import reliability as rel
from seedling.backend.specs import make_spec
from seedling.backend.supervisor import WorkerLock, wait_for_previous_worker
from seedling.storage.files import FileStore, StorageError, ensure_writable, storage_problem
from seedling.storage.jobs_common import JobStatus
from tests.conftest import AppProcess
from tests.helpers import can_make_read_only

FAST_MAX_QUEUE = 6


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_model_dir):
    """One app for the fast process checks (they leave the queue empty behind them)."""
    proc = AppProcess(
        tmp_path_factory.mktemp("reliability") / "data",
        tiny_model_dir,
        "--max-queue",
        str(FAST_MAX_QUEUE),
        step_delay_s=rel.STEP_DELAY_S,
    ).start()
    yield proc
    proc.stop()


def assert_nothing_lost(result: dict, submitted: int) -> None:
    assert result["submitted"] == submitted
    assert (result["lost"], result["stuck_running"], result["ran_twice"]) == (0, 0, 0), result
    files = result["files"]
    assert files["hash_mismatch_or_missing"] == files["rows_pointing_at_temp_files"] == 0, files
    assert files["temp_files_left"] == files["orphan_files"] == 0, files


# -- fast: the default run -------------------------------------------------------------------------
def test_clients_in_parallel_all_complete_and_see_queue_positions(app):
    result = rel.check_load(app, clients=3, jobs=2)
    assert result["completed"] == result["client_done"] == 6, result["client_errors"]
    assert result["database_is_locked"] == 0
    assert result["jobs_that_showed_a_queue_position"] >= 1 and result["max_queue_position_seen"] >= 2


def test_a_full_queue_answers_at_once(app):
    result = rel.check_queue_full(app, max_queue=FAST_MAX_QUEUE)
    assert result["says_queue_full"], result
    assert result["response_s"] < 10


def test_images_folder_read_only_while_running_fails_the_job_with_the_reason(app, tmp_path):
    if not can_make_read_only(tmp_path):
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    result = rel.check_read_only_job(app)
    assert result["job_status"] == "failed" and result["says_read_only"], result
    assert (
        "could not save the image to" in result["job_error"]
        and "Make the folder writable" in result["ui_error"]
    )
    assert result["after_fix_done"]
    assert result["files"]["temp_files_left"] == result["files"]["orphan_files"] == 0


def test_app_refuses_to_start_on_a_read_only_data_folder(tmp_path, tiny_model_dir):
    if not can_make_read_only(tmp_path):
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    result = rel.check_read_only_start(tmp_path, tiny_model_dir)
    assert result["exit_code"] == 73 and result["says_read_only"], result
    assert result["message"].startswith("Seedling Studio cannot start. The data folder is read-only")


def test_disk_full_fails_the_job_with_the_reason_and_leaves_no_file(tmp_path, tiny_model_dir):
    result = rel.check_disk_full(tmp_path, tiny_model_dir)
    assert result["job_status"] == "failed" and result["says_disk_full"], result
    assert "Free some space and press Run again." in result["job_error"]
    assert result["files"] | {"hashes": None} == {
        "images": 0,
        "hash_mismatch_or_missing": 0,
        "rows_pointing_at_temp_files": 0,
        "orphan_files": 0,
        "temp_files_left": 0,
        "hashes": None,
    }
    assert result["rerun_after_space_freed"] == "succeeded"


def test_worker_killed_inside_a_file_write_never_shows_the_half_file(tmp_path, tiny_model_dir):
    result = rel.check_half_written(tmp_path, tiny_model_dir)
    assert result["killed_by_signal"] == 9, result.get("crash_stderr")
    assert result["status_after_crash"] == "running"
    assert result["after_crash"]["temp_files_left"] == 1  # the half-written bytes are on disk...
    assert result["after_crash"]["images"] == 0  # ...and no history row points at them
    assert result["requeued"] and result["temp_files_swept"] == 1
    assert result["final_status"] == "succeeded"
    after = result["after_restart"]
    assert (after["images"], after["hash_mismatch_or_missing"], after["temp_files_left"]) == (1, 0, 0)


def test_a_job_that_keeps_killing_its_worker_fails_with_the_reason(services):
    job = services.jobs.submit(make_spec("generate", prompt="poison", steps=1))
    for attempt in range(1, services.settings.max_attempts + 1):
        assert services.runtime.jobs.claim(job.id)  # the worker took it...
        requeued = services.jobs.requeue_interrupted()  # ...died, and the supervisor restarted it
        assert requeued == ([job.id] if attempt < services.settings.max_attempts else [])
    failed = services.jobs.get(job.id)
    assert failed.status == JobStatus.FAILED and "stopped while running this job 3 times" in failed.error


def test_storage_errors_read_as_sentences(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    full = storage_problem(
        OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "data/files/a.png"))
    )
    assert (
        full
        == "The disk is full: could not save the result to data/files/a.png. Free some space and press Run again."
    )
    ro = storage_problem(OSError(errno.EROFS, "Read-only file system", "x.png"), what="save the image")
    assert ro.startswith(
        "The data folder is read-only: could not save the image to x.png. Make the folder writable"
    )
    assert storage_problem(sqlite3.OperationalError("database or disk is full")).startswith(
        "The disk is full"
    )
    assert storage_problem(sqlite3.OperationalError("attempt to write a readonly database")).startswith(
        "The data folder is read-only"
    )
    assert storage_problem(ValueError("bad prompt")) is None
    assert storage_problem(OSError(errno.ENOENT, "No such file")) is None


def test_ensure_writable_reports_a_full_disk(tmp_path, monkeypatch):
    ensure_writable(tmp_path / "a", tmp_path / "a" / "files")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["files"]  # the probe is gone

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("seedling.storage.files.os.fsync", full)
    with pytest.raises(
        StorageError, match="The disk is full: could not write files to .*start the app again"
    ):
        ensure_writable(tmp_path / "b")


def test_sweep_removes_only_stale_temporary_files(tmp_path):
    store = FileStore(tmp_path / "files")
    kept = store.write_bytes_atomic("images/ab/abc.png", b"png")
    stale = kept.with_name(".abc.png.1234.tmp")
    fresh = kept.with_name(".abd.png.5678.tmp")
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    os.utime(stale, (0, 0))
    assert store.sweep_temp_files(older_than_s=60) == 1
    assert kept.exists() and fresh.exists() and not stale.exists()


def test_one_worker_per_data_folder(tmp_path):
    first, second = WorkerLock(tmp_path), WorkerLock(tmp_path)
    assert first.acquire()
    assert not second.acquire(timeout_s=0.2)
    assert first.holder() == os.getpid()
    first.release()
    assert wait_for_previous_worker(tmp_path, timeout_s=1)
    assert second.acquire()
    second.release()


# -- slow: the counts of the issue ----------------------------------------------------------------
@pytest.mark.slow  # the default run kills a job mid-way in test_app and at every commit point in test_crash_points
def test_worker_killed_mid_job_twice_every_job_completes(app):
    result = rel.check_worker_kill(app, kills=2, poison=False, size=rel.MEDIUM)
    assert_nothing_lost(result, 2)
    assert result["completed"] == result["client_done"] == 2, result
    assert result["attempts"] == [2, 2]  # each killed once in its middle, then re-run to the end


@pytest.mark.slow
def test_worker_kill_twenty_times(tmp_path, tiny_model_dir):
    with rel.running_app(tmp_path / "data", tiny_model_dir) as app:
        result = rel.check_worker_kill(app, kills=20, poison=True)
    assert_nothing_lost(result, 20)
    assert result["completed"] == 20 and result["attempts"] == [2] * 20
    poison = result["poison"]
    assert poison["failed_with_reason"] == 1 and "3 times" in poison["client_error"]
    assert result["worker_restart_s_max"] < 10  # no growing back-off after a worker that ran fine


@pytest.mark.slow
def test_app_kill_five_times(tmp_path, tiny_model_dir):
    result = rel.check_app_kill(tmp_path, tiny_model_dir, kills=5)
    assert_nothing_lost(result, 5)
    assert result["completed"] == 5 and result["history_rows_changed_or_lost"] == 0
    assert result["adapters_intact"]


@pytest.mark.slow
def test_load_ten_clients_five_jobs(tmp_path, tiny_model_dir):
    with rel.running_app(tmp_path / "data", tiny_model_dir, "--max-queue", "52") as app:
        result = rel.check_load(app, clients=10, jobs=5)
    assert result["completed"] == result["client_done"] == 50, result["client_errors"]
    assert result["database_is_locked"] == 0 and result["max_queue_position_seen"] >= 10


@pytest.mark.slow
def test_worker_memory_is_flat_over_200_jobs(tmp_path, tiny_model_dir):
    """Four prompts in turn: what grows per new prompt is the model's text side (docs/reliability.md)."""
    with rel.running_app(tmp_path / "data", tiny_model_dir) as app:
        result = rel.check_rss(app, jobs=200, distinct_prompts=False)
    assert result["failed_jobs"] == 0 and not result["worker_restarted"]
    assert result["slope_mib_per_100_jobs"] < 2, result
    assert result["rss_mib_last"] - result["rss_mib_after_warmup"] < 5, result


def test_a_full_history_database_is_a_sentence_not_a_traceback(tmp_path, monkeypatch):
    """SQLite's own SQLITE_FULL (max_page_count caps the file, as a full disk would)."""
    from sqlalchemy import event

    from seedling.storage.db import Database
    from seedling.storage.jobs_sqlite import SqliteJobStore
    from seedling.storage.migrations import migrate

    monkeypatch.chdir(tmp_path)
    db = Database("data/history.db")
    migrate(db)
    jobs = SqliteJobStore(db)
    jobs.create("generate", {"prompt": "fits"})

    @event.listens_for(db.engine, "begin")
    def cap(conn):
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")

    db.engine.dispose()  # new connections, with the cap
    with pytest.raises(
        StorageError,
        match=r"^The disk is full: could not write to the history database "
        r"data/history.db. Free some space and press Run again.$",
    ):
        jobs.create("generate", {"prompt": "x" * 200_000})
    db.dispose()


def test_only_sqlite_errors_are_read_for_their_text():
    """A prompt quoted in another error must not pass for a full disk."""
    assert storage_problem(RuntimeError("prompt: 'database or disk is full'")) is None
