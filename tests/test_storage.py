"""Storage layer on a temporary database: migrations, pragmas, file store, jobs, images, lineage,
search."""

from __future__ import annotations

import sqlite3
import time

import pytest
from PIL import Image
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from seedling.storage.db import Database
from seedling.storage.files import FileStore, pixel_hash, sha256_file
from seedling.storage.images_common import ImageNotFound, ImageQuery, NewImage, ParentLink
from seedling.storage.images_sqlite import SqliteImageStore, fts_query
from seedling.storage.jobs_common import JobStatus, LeaseLost
from seedling.storage.jobs_sqlite import SqliteJobStore
from seedling.storage.migrations import LATEST_VERSION, MIGRATIONS, migrate
from seedling.storage.models import Base


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "history.db")
    migrate(database)
    yield database
    database.dispose()


@pytest.fixture
def files(tmp_path):
    return FileStore(tmp_path / "files")


def _new_image(files: FileStore, color=(10, 20, 30), prompt="a red fox", task="t2i", **kw) -> NewImage:
    stored = files.save_png(Image.new("RGB", (32, 32), color), "images", f"{prompt}\nSteps: 4")
    return NewImage(
        origin=kw.pop("origin", "output"),
        file_path=stored.rel_path,
        sha256=stored.sha256,
        pixel_hash=stored.pixel_hash,
        file_size=stored.size,
        width=32,
        height=32,
        prompt=prompt,
        task=task,
        **kw,
    )


# --- migrations and connection settings -------------------------------------------------------


def test_migrate_is_idempotent_and_records_version(db):
    assert migrate(db) == LATEST_VERSION
    with sqlite3.connect(db.path) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [v for v, _ in MIGRATIONS]


def test_orm_models_match_migrated_schema(db):
    inspector = inspect(db.engine)
    for table in Base.metadata.tables.values():
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name


def test_sqlite_runs_in_wal_with_busy_timeout_and_foreign_keys(db):
    with db.read() as s:
        conn = s.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_v2_migration_indexes_rows_written_under_v1(tmp_path, files):
    database = Database(tmp_path / "old.db")
    with database.engine.begin() as conn:  # a database created by the v1 code
        conn.exec_driver_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        MIGRATIONS[0][1](conn)
        conn.exec_driver_sql("INSERT INTO schema_version VALUES (1)")
        conn.exec_driver_sql(
            "INSERT INTO images (origin, file_path, sha256, pixel_hash, file_size, width, height, prompt, "
            "params, timings, created_at) VALUES ('output', 'images/x.png', 'h', 'p', 1, 1, 1, "
            "'an old lighthouse', '{}', '{}', 0)"
        )
    assert migrate(database) == LATEST_VERSION
    assert [r.prompt for r in SqliteImageStore(database).search(ImageQuery(text="lighthouse"))] == [
        "an old lighthouse"
    ]
    database.dispose()


def test_refuses_a_database_newer_than_the_code(db):
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO schema_version VALUES ({LATEST_VERSION + 1})")
    with pytest.raises(RuntimeError, match="newer than this code"):
        migrate(db)


# --- file store ---------------------------------------------------------------------------------


def test_png_written_atomically_with_matching_hash(files):
    stored = files.save_png(Image.new("RGB", (16, 16), "red"), "images", "fox\nSteps: 4")
    path = files.path(stored.rel_path)
    assert path.is_file() and sha256_file(path) == stored.sha256 and path.stat().st_size == stored.size
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert files.verify(stored.rel_path, stored.sha256)
    path.write_bytes(b"corrupt")
    assert not files.verify(stored.rel_path, stored.sha256)


def test_paths_come_from_ids_and_stay_inside_the_store(files):
    stored = files.save_png(Image.new("RGB", (16, 16)), "uploads")
    assert stored.rel_path.startswith("uploads/") and stored.rel_path.endswith(".png")
    for bad in ("../outside.png", "/etc/passwd", "images/../../x", ""):
        with pytest.raises(ValueError):
            files.path(bad)
    with pytest.raises(ValueError):
        files.save_png(Image.new("RGB", (16, 16)), "../etc")  # type: ignore[arg-type]


def test_pixel_hash_ignores_png_text_but_not_pixels(files):
    a = files.save_png(Image.new("RGB", (16, 16), "red"), "images", "one\nSeed: 1")
    b = files.save_png(Image.new("RGB", (16, 16), "red"), "images", "two\nSeed: 2")
    assert a.sha256 != b.sha256 and a.pixel_hash == b.pixel_hash
    assert pixel_hash(Image.new("RGB", (16, 16), "blue")) != a.pixel_hash


# --- jobs ---------------------------------------------------------------------------------------


def test_job_lifecycle_and_single_claim(db):
    jobs = SqliteJobStore(db)
    job = jobs.create("generate", {"kind": "generate", "prompt": "fox"})
    assert job.status == JobStatus.QUEUED and jobs.queue_position(job.id) == 1
    assert jobs.claim(job.id) and not jobs.claim(job.id)  # a duplicate message cannot run it twice
    jobs.set_progress(job.id, 2, 4, b"png-bytes")
    jobs.set_progress(job.id, 3, 4, None)
    assert (jobs.get(job.id).progress_step, jobs.get_preview(job.id)) == (3, b"png-bytes")
    jobs.finish(job.id, JobStatus.SUCCEEDED, timings={"total": 0.1})
    done = jobs.get(job.id)
    assert done.status == JobStatus.SUCCEEDED and done.timings == {"total": 0.1} and done.attempts == 1


def test_cancel_queued_is_immediate_and_running_sets_the_flag(db):
    jobs = SqliteJobStore(db)
    queued = jobs.create("generate", {})
    running = jobs.create("generate", {})
    jobs.claim(running.id)
    assert jobs.request_cancel(queued.id) == JobStatus.CANCELLED and not jobs.claim(queued.id)
    assert jobs.request_cancel(running.id) == JobStatus.RUNNING and jobs.is_cancel_requested(running.id)


def test_queue_positions_count_older_queued_jobs(db):
    jobs = SqliteJobStore(db)
    ids = [jobs.create("generate", {}).id for _ in range(3)]
    assert [jobs.queue_position(i) for i in ids] == [1, 2, 3]
    jobs.claim(ids[0])
    assert [jobs.queue_position(i) for i in ids] == [None, 1, 2]
    assert jobs.count_active() == 3


def test_reset_interrupted_requeues_fails_poison_jobs_and_honours_cancel(db):
    jobs = SqliteJobStore(db)
    crashed, poison, waiting, cancelled = (jobs.create("generate", {}).id for _ in range(4))
    for job_id in (crashed, poison, cancelled):
        jobs.claim(job_id)
    jobs.request_cancel(cancelled)
    with db.write() as s:  # the poison job already killed the worker twice before
        s.connection().exec_driver_sql(f"UPDATE jobs SET attempts = 3 WHERE id = {poison}")
    requeued, failed = jobs.reset_interrupted(max_attempts=3)
    assert requeued == [crashed] and failed == [poison]  # a queued job needs no requeue
    assert jobs.get(crashed).status == JobStatus.QUEUED and jobs.get(waiting).status == JobStatus.QUEUED
    assert jobs.get(cancelled).status == JobStatus.CANCELLED
    assert "gave up" in jobs.get(poison).error


def test_only_expired_leases_or_dead_owners_are_requeued(db):
    jobs = SqliteJobStore(db)
    live, dead, expired = (jobs.create("generate", {}).id for _ in range(3))
    assert jobs.claim(live, "w-live", lease_s=30) and jobs.claim(dead, "w-dead", lease_s=30)
    assert jobs.claim(expired, "w-hung", lease_s=1)
    later = time.time() + 5
    assert jobs.reset_interrupted(3, owners=(), now=later) == ([expired], [])  # a live lease is kept
    assert jobs.reset_interrupted(3, owners=["w-dead"], now=later) == ([dead], [])
    assert jobs.get(live).status == JobStatus.RUNNING and jobs.get(live).lease_owner == "w-live"
    assert jobs.reset_interrupted(3) == ([live], [])  # no worker alive at all: everything comes back


def test_a_requeued_job_keeps_its_place_in_line(db):
    jobs = SqliteJobStore(db)
    first, second, third = (jobs.create("generate", {}).id for _ in range(3))
    assert jobs.claim_next("w1") == first  # ... and w1 dies
    jobs.reset_interrupted(3, owners=["w1"])
    assert [jobs.claim_next("w2"), jobs.claim_next("w2"), jobs.claim_next("w2")] == [first, second, third]
    assert jobs.claim_next("w2") is None


def test_lease_renewal_belongs_to_its_owner(db):
    jobs = SqliteJobStore(db)
    job = jobs.create("generate", {}).id
    assert jobs.claim_next("w1", lease_s=1) == job
    assert jobs.renew_lease(job, "w1", lease_s=30) and not jobs.renew_lease(job, "w2")
    jobs.reset_interrupted(3, owners=["w1"])
    assert not jobs.renew_lease(job, "w1")  # requeued: w1 holds it no more
    assert not jobs.finish(job, JobStatus.SUCCEEDED, owner="w1") and jobs.get(job).status == JobStatus.QUEUED


def test_outputs_and_success_commit_together_and_only_once(db, files):
    jobs = SqliteJobStore(db)
    images = SqliteImageStore(db)
    job = jobs.create("generate", {}).id
    assert jobs.claim_next("w1") == job
    jobs.reset_interrupted(3, owners=["w1"])  # w1 was thought dead; w2 runs the job again
    assert jobs.claim_next("w2") == job
    with pytest.raises(LeaseLost):  # w1 comes back with its results: nothing is written
        jobs.complete(job, [_new_image(files, job_id=job)], [], False, owner="w1")
    assert images.for_job(job) == [] and jobs.get(job).status == JobStatus.RUNNING
    (out,) = jobs.complete(job, [_new_image(files, job_id=job)], [], False, owner="w2")
    assert jobs.get(job).status == JobStatus.SUCCEEDED and [im.id for im in images.for_job(job)] == [out.id]
    with pytest.raises(IntegrityError):  # the schema refuses a second set of outputs for a job
        images.add([_new_image(files, job_id=job, output_index=0)])


def test_a_queued_job_that_has_its_outputs_is_finished_not_rerun(db, files):
    jobs = SqliteJobStore(db)
    images = SqliteImageStore(db)
    job = jobs.create("generate", {}).id
    images.add([_new_image(files, job_id=job)])  # written by an older version before it crashed
    assert not jobs.claim(job, "w1") and jobs.claim_next("w1") is None
    assert jobs.get(job).status == JobStatus.SUCCEEDED


def test_the_same_picture_may_be_two_references(db, files):
    images = SqliteImageStore(db)
    (ref,) = images.add([_new_image(files, origin="upload")])
    (out,) = images.add([_new_image(files, task="compose")],
                        [ParentLink(ref.id, "reference", 0), ParentLink(ref.id, "reference", 1)])
    assert [(r.image.id, r.position) for r in images.parents(out.id)] == [(ref.id, 0), (ref.id, 1)]


def test_v4_migration_keeps_the_first_outputs_of_a_job_run_twice(tmp_path, files):
    """A database of schema 3 where a job ran twice (two rows per output index) and a later edit
    used the duplicate as its source: the duplicate goes, the edit's lineage points at the first."""
    db = Database(tmp_path / "old.db")
    with db.engine.begin() as conn:
        for version, step in MIGRATIONS[:3]:
            step(conn)
        conn.exec_driver_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO schema_version VALUES (1), (2), (3)")
        conn.exec_driver_sql("INSERT INTO jobs (id, kind, status, spec, created_at) VALUES (1, 'generate', 'succeeded', '{}', 0)")
        for image_id, job, index in ((1, 1, 0), (2, 1, 0), (3, None, 0)):
            stored = files.save_png(Image.new("RGB", (8, 8), (image_id, 0, 0)), "images")
            conn.exec_driver_sql(
                "INSERT INTO images (id, job_id, origin, output_index, file_path, sha256, pixel_hash, file_size,"
                " width, height, created_at) VALUES (?, ?, 'output', ?, ?, 'h', 'p', 1, 8, 8, 0)",
                (image_id, job, index, stored.rel_path),
            )
        conn.exec_driver_sql("INSERT INTO image_edges (child_id, parent_id, role, position) VALUES (3, 2, 'source', 0)")
    assert migrate(db) == LATEST_VERSION
    images = SqliteImageStore(db)
    assert [im.id for im in images.for_job(1)] == [1]
    assert [(r.image.id, r.role) for r in images.parents(3)] == [(1, "source")]


# --- images, lineage, search -------------------------------------------------------------------


def test_lineage_parents_children_and_siblings(db, files):
    images = SqliteImageStore(db)
    (source,) = images.add([_new_image(files, prompt="a cat")])
    (mask,) = images.add([_new_image(files, origin="mask", prompt="")])
    (edit,) = images.add(
        [_new_image(files, prompt="make it blue", task="inpaint")],
        [ParentLink(source.id, "source"), ParentLink(mask.id, "mask")],
    )
    panels = images.add(
        [_new_image(files, prompt="story", task="storyboard", output_index=i) for i in range(3)],
        [ParentLink(edit.id, "character")],
        link_siblings=True,
    )
    assert {(r.image.id, r.role) for r in images.parents(edit.id)} == {
        (source.id, "source"),
        (mask.id, "mask"),
    }
    assert [(r.image.id, r.role) for r in images.children(source.id)] == [(edit.id, "source")]
    assert {r.image.id for r in images.children(edit.id)} == {p.id for p in panels}
    siblings = [r.image.id for r in images.parents(panels[0].id) if r.role == "sibling"]
    assert siblings == [panels[1].id, panels[2].id]
    images.delete(source.id)  # edges go with the row; the child stays
    assert [r.role for r in images.parents(edit.id)] == ["mask"]
    with pytest.raises(ImageNotFound):
        images.get(source.id)


def _found(images: SqliteImageStore, text: str) -> list[str]:
    """The prompts a history search for `text` finds, sorted."""
    return sorted(r.prompt for r in images.search(ImageQuery(text=text)))


def test_prompt_search_prefixes_and_all_words(db, files):
    images = SqliteImageStore(db)
    images.add([_new_image(files, prompt=p) for p in ("a red fox in snow", "a red barn", "blue fox")])

    assert _found(images, "fox") == ["a red fox in snow", "blue fox"]
    assert _found(images, "red fo") == ["a red fox in snow"]
    assert _found(images, "RED") == ["a red barn", "a red fox in snow"]
    assert _found(images, "zebra") == []


@pytest.mark.parametrize("text", ['"', "fox OR", "NEAR(", "prompt:fox", "*", "a AND (b", "-fox", "^"])
def test_search_text_is_never_fts_syntax(db, files, text):
    images = SqliteImageStore(db)
    images.add([_new_image(files, prompt="fox")])
    images.search(ImageQuery(text=text))  # no sqlite OperationalError
    assert fts_query("") is None


def test_filters_by_task_date_adapter_and_origin(db, files):
    images = SqliteImageStore(db)
    with db.write() as s:
        s.connection().exec_driver_sql(
            "INSERT INTO adapters (id, name, kind, created_at) VALUES (7, 'my-style', 'lora', 0)"
        )
    t2i, edit, upload = images.add(
        [
            _new_image(files, prompt="fox", task="t2i"),
            _new_image(files, prompt="fox edit", task="edit", adapter_id=7),
            _new_image(files, prompt="", task=None, origin="upload"),
        ]
    )
    assert [r.id for r in images.search(ImageQuery(task="edit"))] == [edit.id]
    assert [r.id for r in images.search(ImageQuery(adapter_id=7))] == [edit.id]
    assert [r.id for r in images.search(ImageQuery(origin="upload"))] == [upload.id]
    now = time.time()
    assert {r.id for r in images.search(ImageQuery(created_after=now - 60))} == {t2i.id, edit.id}
    assert images.search(ImageQuery(created_before=now - 60)) == []
    assert [r.id for r in images.search(ImageQuery(text="fox", task="t2i"))] == [t2i.id]


def test_find_by_pixels_prefers_outputs(db, files):
    images = SqliteImageStore(db)
    upload, output = images.add([_new_image(files, origin="upload"), _new_image(files, origin="output")])
    assert images.find_by_pixels(upload.pixel_hash).id == output.id
    assert images.find_by_pixels("nope") is None


def test_prompt_search_finds_word_forms(db, files):
    images = SqliteImageStore(db)
    images.add([_new_image(files, prompt=p) for p in ("a fox running", "two foxes", "a red barn")])

    assert _found(images, "foxes") == ["a fox running", "two foxes"]
    assert _found(images, "fox") == ["a fox running", "two foxes"]
    assert _found(images, "runs") == ["a fox running"]
    assert _found(images, "barns red") == ["a red barn"]


def test_v5_migration_rebuilds_the_prompt_index_with_stemming(tmp_path, files):
    """A database of schema 4 with images in it: after the migration "foxes" finds "a fox" (rows
    written before it are indexed), and rows added or deleted afterwards keep the index in step."""
    db = Database(tmp_path / "old.db")
    with db.engine.begin() as conn:
        for version, step in MIGRATIONS[:4]:
            step(conn)
        conn.exec_driver_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO schema_version VALUES (1), (2), (3), (4)")
        stored = files.save_png(Image.new("RGB", (8, 8)), "images")
        conn.exec_driver_sql(  # the schema-4 code's row, in its own columns
            "INSERT INTO images (origin, file_path, sha256, pixel_hash, file_size, width, height, prompt,"
            " created_at) VALUES ('output', ?, ?, ?, ?, 8, 8, 'a fox in snow', 0)",
            (stored.rel_path, stored.sha256, stored.pixel_hash, stored.size),
        )
        no_stemming = "SELECT rowid FROM images_fts WHERE images_fts MATCH 'foxes'"
        assert conn.exec_driver_sql(no_stemming).all() == []  # schema 4
    assert migrate(db) == LATEST_VERSION
    images = SqliteImageStore(db)
    (old,) = images.all()
    assert [r.id for r in images.search(ImageQuery(text="foxes"))] == [old.id]
    (new,) = images.add([_new_image(files, color=(1, 2, 3), prompt="foxes at night")])
    images.delete(old.id)
    assert [r.id for r in images.search(ImageQuery(text="fox"))] == [new.id]
    db.dispose()
