"""History a designer works from, at the storage layer: favourites, named boards, delete to a
trash (undo, empty), and the v6 migration of a database that already holds work."""

# ruff: noqa: F811 - the db and files fixtures come from test_storage by import, tests name them

from __future__ import annotations

import sqlite3

import pytest
from PIL import Image

from seedling.backend.errors import InvalidJob, NotFound
from seedling.backend.history import HistoryService
from seedling.backend.specs import make_spec
from seedling.storage.boards_common import BoardNameTaken, BoardNotFound
from seedling.storage.boards_sqlite import SqliteBoardStore
from seedling.storage.db import Database
from seedling.storage.images_common import ImageNotFound, ImageQuery, ParentLink
from seedling.storage.images_sqlite import SqliteImageStore
from seedling.storage.jobs_common import JobStatus
from seedling.storage.jobs_sqlite import SqliteJobStore
from seedling.storage.migrations import LATEST_VERSION, MIGRATIONS, migrate
from tests.test_storage import _new_image, db, files  # noqa: F401 - shared fixtures


def _ids(records) -> list[int]:
    return [r.id for r in records]


def _lineage_ids(images: SqliteImageStore, image_id: int) -> tuple[list[int], list[int]]:
    return (
        sorted(r.image.id for r in images.parents(image_id)),
        sorted(r.image.id for r in images.children(image_id)),
    )


# --- favourites ---------------------------------------------------------------------------------


def test_favourites_filter_and_toggle(db, files):
    images = SqliteImageStore(db)
    fox, barn = images.add([_new_image(files, prompt="a red fox"), _new_image(files, prompt="a red barn")])
    assert not fox.favourite
    assert images.set_favourite(fox.id, True).favourite and images.get(fox.id).favourite
    assert _ids(images.search(ImageQuery(favourites_only=True))) == [fox.id]
    assert _ids(images.search(ImageQuery(text="red", favourites_only=True))) == [fox.id]
    assert _ids(images.search(ImageQuery())) == [barn.id, fox.id]  # the filter is off by default
    images.set_favourite(fox.id, False)
    assert images.search(ImageQuery(favourites_only=True)) == []
    with pytest.raises(ImageNotFound):
        images.set_favourite(999, True)


# --- boards -------------------------------------------------------------------------------------


def test_boards_hold_images_an_image_may_be_on_several(db, files):
    images, boards = SqliteImageStore(db), SqliteBoardStore(db)
    fox, barn, owl = images.add([_new_image(files, prompt=p) for p in ("fox", "barn", "owl")])
    moods, client = boards.create("Moods"), boards.create("Client picks")
    assert boards.add(moods.id, [fox.id, owl.id]) == 2
    assert boards.add(moods.id, [fox.id]) == 0  # already on it: nothing changes
    assert boards.add(client.id, [fox.id]) == 1
    assert _ids(images.search(ImageQuery(board_id=moods.id))) == [owl.id, fox.id]
    assert _ids(images.search(ImageQuery(board_id=client.id))) == [fox.id]
    assert _ids(images.search(ImageQuery(board_id=moods.id, text="fox"))) == [fox.id]
    assert [b.name for b in boards.boards_of(fox.id)] == ["Client picks", "Moods"]
    assert [(b.name, b.image_count) for b in boards.list()] == [("Client picks", 1), ("Moods", 2)]
    assert boards.remove(moods.id, [owl.id, barn.id]) == 1  # barn was never on it
    assert _ids(images.search(ImageQuery(board_id=moods.id))) == [fox.id]
    boards.delete(moods.id)  # the board goes, its images stay
    assert _ids(images.search(ImageQuery())) == [owl.id, barn.id, fox.id]
    assert [b.name for b in boards.boards_of(fox.id)] == ["Client picks"]


def test_board_names_are_unique_ignoring_case_and_ids_must_exist(db, files):
    images, boards = SqliteImageStore(db), SqliteBoardStore(db)
    (fox,) = images.add([_new_image(files)])
    board = boards.create("Moods")
    with pytest.raises(BoardNameTaken):
        boards.create("moods")
    with pytest.raises(BoardNotFound):
        boards.add(board.id + 1, [fox.id])
    with pytest.raises(ImageNotFound):  # all or nothing: the existing image is not added either
        boards.add(board.id, [fox.id, 999])
    assert boards.get(board.id).image_count == 0


# --- trash --------------------------------------------------------------------------------------


def test_trash_hides_from_search_lineage_and_reuse_and_restore_undoes_it(db, files):
    images, boards = SqliteImageStore(db), SqliteBoardStore(db)
    (source,) = images.add([_new_image(files, color=(1, 2, 3), prompt="a red fox")])
    (edit,) = images.add(
        [_new_image(files, prompt="make the fox blue", task="edit")], [ParentLink(source.id, "source")]
    )
    (child,) = images.add(
        [_new_image(files, prompt="a fox at night", task="edit")], [ParentLink(edit.id, "source")]
    )
    images.set_favourite(edit.id, True)
    board = boards.create("Moods")
    boards.add(board.id, [edit.id])

    (trashed,) = images.trash([edit.id])
    assert trashed.trashed and images.get(edit.id).deleted_at is not None
    assert edit.id not in _ids(images.search(ImageQuery()))
    assert images.search(ImageQuery(text="blue")) == []  # the prompt index does not find it
    assert images.search(ImageQuery(favourites_only=True)) == []
    assert images.search(ImageQuery(board_id=board.id)) == [] and boards.get(board.id).image_count == 0
    assert _lineage_ids(images, source.id) == ([], [])  # its source no longer lists it ...
    assert _lineage_ids(images, child.id) == ([], [])  # ... nor does what was made from it
    assert _ids(r.image for r in images.parents(child.id, include_trashed=True)) == [edit.id]
    assert _ids(images.search(ImageQuery(trash=True))) == [edit.id]
    # the file stays until the trash is emptied
    assert files.verify(edit.file_path, edit.sha256)

    (restored,) = images.restore([edit.id])
    assert not restored.trashed and restored.favourite
    assert _ids(images.search(ImageQuery(text="blue"))) == [edit.id]
    assert _ids(images.search(ImageQuery(board_id=board.id))) == [edit.id]
    assert _lineage_ids(images, edit.id) == ([source.id], [child.id])
    assert images.search(ImageQuery(trash=True)) == []


def test_trash_is_all_or_nothing_and_a_trashed_picture_is_not_reused(db, files):
    images = SqliteImageStore(db)
    (fox,) = images.add([_new_image(files, color=(9, 9, 9))])
    with pytest.raises(ImageNotFound):
        images.trash([fox.id, 999])
    assert not images.get(fox.id).trashed
    images.trash([fox.id])
    # a re-upload of the same pixels gets its own row: the trashed one's file may soon be gone
    assert images.find_by_pixels(fox.pixel_hash) is None


def test_trash_orders_by_when_it_was_trashed(db, files):
    images = SqliteImageStore(db)
    first, second = images.add([_new_image(files, prompt="one"), _new_image(files, prompt="two")])
    images.trash([second.id])
    images.trash([first.id])
    assert _ids(images.search(ImageQuery(trash=True))) == [first.id, second.id]


def test_purge_removes_rows_and_keeps_the_survivors_lineage_consistent(db, files):
    images, boards = SqliteImageStore(db), SqliteBoardStore(db)
    (source,) = images.add([_new_image(files, prompt="a fox")])
    (edit,) = images.add(
        [_new_image(files, prompt="blue fox", task="edit")], [ParentLink(source.id, "source")]
    )
    (child,) = images.add(
        [_new_image(files, prompt="night fox", task="edit")], [ParentLink(edit.id, "source")]
    )
    (kept,) = images.add([_new_image(files, prompt="kept")])
    board = boards.create("Moods")
    boards.add(board.id, [edit.id, source.id])
    images.trash([edit.id, kept.id])

    removed = images.purge_trash(keep=[kept.id])
    assert _ids(removed) == [edit.id]
    with pytest.raises(ImageNotFound):
        images.get(edit.id)
    assert images.get(kept.id).trashed  # still in the trash, not removed
    assert _lineage_ids(images, source.id) == ([], []) and _lineage_ids(images, child.id) == ([], [])
    assert _ids(images.search(ImageQuery(board_id=board.id))) == [source.id]
    assert images.search(ImageQuery(text="blue")) == []
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute(
            "SELECT COUNT(*) FROM image_edges WHERE ? IN (child_id, parent_id)", (edit.id,)
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT COUNT(*) FROM board_images WHERE image_id = ?", (edit.id,)
        ).fetchone() == (0,)
        # raises (SQLITE_CORRUPT_VTAB) when the prompt index and the table disagree
        conn.execute("INSERT INTO images_fts(images_fts, rank) VALUES ('integrity-check', 1)")


def test_trashing_an_input_does_not_disturb_the_job_committing_its_outputs(db, files):
    """The worker commits a job's outputs, their lineage and "succeeded" in one transaction while
    the designer trashes the job's source: the commit succeeds, once, and the edge is kept."""
    jobs, images = SqliteJobStore(db), SqliteImageStore(db)
    (source,) = images.add([_new_image(files, origin="upload")])
    job = jobs.create("edit", {}).id
    assert jobs.claim_next("w1") == job
    images.trash([source.id])
    (out,) = jobs.complete(
        job,
        [_new_image(files, job_id=job, task="edit")],
        [ParentLink(source.id, "source")],
        False,
        owner="w1",
    )
    assert jobs.get(job).status == JobStatus.SUCCEEDED and _ids(images.for_job(job)) == [out.id]
    assert not jobs.claim(job, "w2")  # finished: never run again
    images.restore([source.id])
    assert _ids(r.image for r in images.parents(out.id)) == [source.id]
    images.trash([out.id])  # a job's trashed outputs still count: the job is not re-run
    assert not jobs.claim(job, "w2") and jobs.get(job).status == JobStatus.SUCCEEDED


# --- the history service: what the UI calls ------------------------------------------------------


@pytest.fixture
def in_use() -> set[int]:
    """The image ids queued or running jobs read, as the history fixture's service sees them."""
    return set()


@pytest.fixture
def history(db, files, in_use):
    return HistoryService(
        SqliteImageStore(db), files, None, SqliteBoardStore(db), inputs_in_use=lambda: set(in_use)
    )


def test_empty_trash_removes_files_but_keeps_inputs_of_waiting_jobs(history, in_use):
    fox = history.store_input(Image.new("RGB", (16, 16), "red"))
    owl = history.store_input(Image.new("RGB", (16, 16), "blue"))
    history.trash([fox.id, owl.id])
    assert history.path(fox).is_file()  # in the trash, the file is still there
    in_use.add(owl.id)  # a queued job still needs this one
    removed, kept = history.empty_trash()
    assert _ids(removed) == [fox.id] and _ids(kept) == [owl.id]
    assert not history.path(fox).exists() and history.path(owl).is_file()
    with pytest.raises(NotFound):
        history.get(fox.id)
    in_use.clear()
    removed, kept = history.empty_trash()
    assert _ids(removed) == [owl.id] and kept == [] and not history.path(owl).exists()


def test_board_names_are_checked_with_a_sentence(history):
    assert history.create_board("  Client   picks ").name == "Client picks"
    for bad, reason in (
        ("", "give the board a name"),
        ("x" * 81, "at most 80"),
        ("client PICKS", "already exists"),
        ("a\x00b", "control characters"),
        (7, "must be text"),
    ):
        with pytest.raises(InvalidJob, match=reason):
            history.create_board(bad)
    with pytest.raises(NotFound):
        history.add_to_board(99, [1])
    with pytest.raises(InvalidJob):
        history.trash("not an id")


def test_inputs_in_use_lists_what_waiting_jobs_read(services):
    src = services.history.store_input(Image.new("RGB", (128, 128), "purple"))
    mask = services.history.store_input(Image.new("L", (128, 128), 255), origin="mask")
    job = services.jobs.submit(
        make_spec("inpaint", prompt="x", source_image_id=src.id, mask_image_id=mask.id)
    )
    assert services.jobs.inputs_in_use() == {src.id, mask.id}
    services.history.trash([src.id, mask.id])
    removed, kept = services.history.empty_trash()
    assert removed == [] and {im.id for im in kept} == {src.id, mask.id}
    services.jobs.cancel(job.id)
    assert services.jobs.inputs_in_use() == set()
    removed, _ = services.history.empty_trash()
    assert {im.id for im in removed} == {src.id, mask.id}


# --- migration ------------------------------------------------------------------------------------


def test_v6_migration_keeps_a_v5_database_with_work_in_it(tmp_path, files):
    """A database written by the v5 code (jobs, outputs, an upload, lineage) migrates to v6 with
    every row and column as it was; nothing is a favourite, on a board or in the trash; search
    still finds word forms."""
    database = Database(tmp_path / "v5.db")
    with database.engine.begin() as conn:  # the v5 code's schema and rows, in its own SQL
        conn.exec_driver_sql("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, step in MIGRATIONS[:5]:
            step(conn)
            conn.exec_driver_sql(f"INSERT INTO schema_version VALUES ({version})")
        conn.exec_driver_sql(
            "INSERT INTO jobs (id, kind, status, spec, created_at, queued_at) "
            "VALUES (1, 'edit', 'succeeded', '{\"prompt\": \"make the foxes blue\"}', 1, 1)"
        )
        for image_id, job_id, origin, prompt in (
            (1, None, "upload", ""),
            (2, 1, "output", "make the foxes blue"),
        ):
            stored = files.save_png(Image.new("RGB", (8, 8), (image_id, 0, 0)), "images")
            conn.exec_driver_sql(
                "INSERT INTO images (id, job_id, origin, file_path, sha256, pixel_hash, file_size, width, height,"
                " task, prompt, params, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 8, 8, 'edit', ?, '{\"seed\": 5}', 2)",
                (
                    image_id,
                    job_id,
                    origin,
                    stored.rel_path,
                    stored.sha256,
                    stored.pixel_hash,
                    stored.size,
                    prompt,
                ),
            )
        conn.exec_driver_sql("INSERT INTO image_edges (child_id, parent_id, role) VALUES (2, 1, 'source')")
    assert MIGRATIONS[4][0] == 5
    store = SqliteImageStore(database)
    upload_id, out_id = 1, 2
    with sqlite3.connect(database.path) as conn:
        before = {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("images", "image_edges", "jobs")
        }
    assert all(before.values())

    assert migrate(database) == LATEST_VERSION == 6
    with sqlite3.connect(database.path) as conn:
        for table, rows in before.items():
            old_columns = len(rows[0])
            after = [row[:old_columns] for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
            assert after == rows, table  # new columns come last; the old ones are untouched
        assert conn.execute("SELECT COUNT(*) FROM boards").fetchone() == (0,)
    migrated = store.get(out_id)
    assert not migrated.favourite and not migrated.trashed and migrated.params == {"seed": 5}
    assert _ids(store.search(ImageQuery(text="fox"))) == [out_id]  # stemmed and prefix, as in v5
    assert _ids(store.search(ImageQuery(text="fo"))) == [out_id]
    assert _ids(r.image for r in store.parents(out_id)) == [upload_id]
    store.trash([out_id])  # and the new columns work on the old rows
    assert store.search(ImageQuery(text="fox")) == []
    database.dispose()
