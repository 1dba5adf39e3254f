"""Explicit, ordered schema migrations recorded in a `schema_version` table.

Each migration is a function of a connection inside one transaction; `migrate()` applies the
ones newer than the stored version, in order, and records each. Never edit a released
migration: append a new one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from sqlalchemy import Connection, text

from seedling.storage.db import Database

log = logging.getLogger(__name__)


def _exec(conn: Connection, script: str) -> None:
    """Run statements separated by lines holding only "--" (trigger bodies contain semicolons)."""
    for statement in re.split(r"^\s*--\s*$", script, flags=re.MULTILINE):
        if statement.strip():
            conn.exec_driver_sql(statement)


def _v1_core_tables(conn: Connection) -> None:
    _exec(
        conn,
        """
        CREATE TABLE adapters (
            id INTEGER PRIMARY KEY,
            name VARCHAR NOT NULL UNIQUE,
            kind VARCHAR NOT NULL,
            file_path VARCHAR,
            sha256 VARCHAR,
            base_model VARCHAR NOT NULL DEFAULT '',
            params JSON NOT NULL DEFAULT '{}',
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            created_at FLOAT NOT NULL
        )
        --
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            spec JSON NOT NULL,
            rerun_of INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            adapter_id INTEGER REFERENCES adapters(id) ON DELETE SET NULL,
            created_at FLOAT NOT NULL,
            started_at FLOAT,
            finished_at FLOAT,
            progress_step INTEGER NOT NULL DEFAULT 0,
            progress_total INTEGER NOT NULL DEFAULT 0,
            preview_png BLOB,
            error TEXT,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            timings JSON NOT NULL DEFAULT '{}',
            attempts INTEGER NOT NULL DEFAULT 0
        )
        --
        CREATE INDEX ix_jobs_status ON jobs (status)
        --
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
            origin VARCHAR NOT NULL,
            output_index INTEGER NOT NULL DEFAULT 0,
            file_path VARCHAR NOT NULL UNIQUE,
            sha256 VARCHAR NOT NULL,
            pixel_hash VARCHAR NOT NULL,
            file_size INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            seed INTEGER,
            task VARCHAR,
            prompt TEXT NOT NULL DEFAULT '',
            params JSON NOT NULL DEFAULT '{}',
            timings JSON NOT NULL DEFAULT '{}',
            adapter_id INTEGER REFERENCES adapters(id) ON DELETE SET NULL,
            created_at FLOAT NOT NULL
        )
        --
        CREATE INDEX ix_images_job_id ON images (job_id)
        --
        CREATE INDEX ix_images_pixel_hash ON images (pixel_hash)
        --
        CREATE INDEX ix_images_task ON images (task)
        --
        CREATE INDEX ix_images_created_at ON images (created_at)
        --
        CREATE TABLE image_edges (
            child_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            parent_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            role VARCHAR NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (child_id, parent_id, role)
        )
        --
        CREATE INDEX ix_image_edges_parent_id ON image_edges (parent_id)
        """,
    )


def _v2_prompt_search(conn: Connection) -> None:
    """FTS5 index over image prompts, kept in step with `images` by triggers (external content)."""
    _exec(
        conn,
        """
        CREATE VIRTUAL TABLE images_fts USING fts5(
            prompt, content='images', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
        )
        --
        CREATE TRIGGER images_fts_insert AFTER INSERT ON images BEGIN
            INSERT INTO images_fts(rowid, prompt) VALUES (new.id, new.prompt);
        END
        --
        CREATE TRIGGER images_fts_delete AFTER DELETE ON images BEGIN
            INSERT INTO images_fts(images_fts, rowid, prompt) VALUES ('delete', old.id, old.prompt);
        END
        --
        CREATE TRIGGER images_fts_update AFTER UPDATE OF prompt ON images BEGIN
            INSERT INTO images_fts(images_fts, rowid, prompt) VALUES ('delete', old.id, old.prompt);
            INSERT INTO images_fts(rowid, prompt) VALUES (new.id, new.prompt);
        END
        --
        INSERT INTO images_fts(images_fts) VALUES ('rebuild')
        """,
    )


def _v3_finetune(conn: Connection) -> None:
    """Fine-tuning: a job's live metrics (loss curve), the time it (re-)entered the queue (a
    fine-tune job that yields to other jobs goes to the back), and what an adapter was trained on."""
    _exec(
        conn,
        """
        ALTER TABLE jobs ADD COLUMN queued_at FLOAT
        --
        UPDATE jobs SET queued_at = created_at
        --
        ALTER TABLE jobs ADD COLUMN metrics JSON NOT NULL DEFAULT '{}'
        --
        ALTER TABLE adapters ADD COLUMN data JSON NOT NULL DEFAULT '[]'
        --
        ALTER TABLE adapters ADD COLUMN metrics JSON NOT NULL DEFAULT '{}'
        """,
    )


def _v4_exactly_once(conn: Connection) -> None:
    """Exactly-once jobs and repeated references.

    - A job's outputs are unique by (job, output index): a second set of outputs for one job
      cannot be written. Older databases may hold such duplicates (a worker killed between saving
      a job's images and marking it done ran the job again): the first row of each pair stays,
      lineage that pointed at a duplicate points at the row kept, the duplicate rows go (their
      files stay on disk; `HistoryService.verify` does not list them).
    - Lineage edges are keyed by position too: the same picture may be reference 1 and 2.
    - A running job's lease (owner, expiry): only jobs whose lease expired are requeued."""
    _exec(
        conn,
        """
        CREATE TABLE image_edges_v4 (
            child_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            parent_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            role VARCHAR NOT NULL,
            position INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (child_id, parent_id, role, position)
        )
        --
        INSERT INTO image_edges_v4 (child_id, parent_id, role, position)
            SELECT child_id, parent_id, role, position FROM image_edges
        --
        DROP TABLE image_edges
        --
        ALTER TABLE image_edges_v4 RENAME TO image_edges
        --
        CREATE INDEX ix_image_edges_parent_id ON image_edges (parent_id)
        --
        CREATE TEMP TABLE duplicate_outputs AS
            SELECT d.id AS dup_id, (
                SELECT MIN(k.id) FROM images k
                WHERE k.origin = 'output' AND k.job_id = d.job_id AND k.output_index = d.output_index
            ) AS keep_id
            FROM images d
            WHERE d.origin = 'output' AND d.job_id IS NOT NULL AND d.id > (
                SELECT MIN(k.id) FROM images k
                WHERE k.origin = 'output' AND k.job_id = d.job_id AND k.output_index = d.output_index
            )
        --
        INSERT OR IGNORE INTO image_edges (child_id, parent_id, role, position)
            SELECT e.child_id, dup.keep_id, e.role, e.position
            FROM image_edges e JOIN duplicate_outputs dup ON e.parent_id = dup.dup_id
            WHERE e.child_id NOT IN (SELECT dup_id FROM duplicate_outputs)
        --
        DELETE FROM images WHERE id IN (SELECT dup_id FROM duplicate_outputs)
        --
        DROP TABLE duplicate_outputs
        --
        CREATE UNIQUE INDEX ux_images_job_output ON images (job_id, output_index)
            WHERE origin = 'output' AND job_id IS NOT NULL
        --
        ALTER TABLE jobs ADD COLUMN lease_owner VARCHAR
        --
        ALTER TABLE jobs ADD COLUMN lease_expires_at FLOAT
        """,
    )


def _v5_stemmed_search(conn: Connection) -> None:
    """Prompt search finds word forms ("foxes" finds "fox", "running" finds "run"): the FTS5
    index is rebuilt with the porter stemmer in front of unicode61. The triggers of v2 write to the
    same table name, so they keep working on the new index."""
    _exec(
        conn,
        """
        DROP TABLE images_fts
        --
        CREATE VIRTUAL TABLE images_fts USING fts5(
            prompt, content='images', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
        )
        --
        INSERT INTO images_fts(images_fts) VALUES ('rebuild')
        """,
    )


def _v6_favourites_boards_trash(conn: Connection) -> None:
    """A designer's history: favourites (a flag on an image), named boards (an image may be on
    several), and a trash (deleted_at set: hidden from history, search and lineage, its file kept
    until the trash is emptied, so a delete can be undone). Existing rows are neither favourites,
    on a board, nor trashed."""
    _exec(
        conn,
        """
        ALTER TABLE images ADD COLUMN favourite INTEGER NOT NULL DEFAULT 0
        --
        ALTER TABLE images ADD COLUMN deleted_at FLOAT
        --
        CREATE INDEX ix_images_deleted_at ON images (deleted_at)
        --
        CREATE TABLE boards (
            id INTEGER PRIMARY KEY,
            name VARCHAR NOT NULL UNIQUE COLLATE NOCASE,
            created_at FLOAT NOT NULL
        )
        --
        CREATE TABLE board_images (
            board_id INTEGER NOT NULL REFERENCES boards(id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            added_at FLOAT NOT NULL,
            PRIMARY KEY (board_id, image_id)
        )
        --
        CREATE INDEX ix_board_images_image_id ON board_images (image_id)
        """,
    )


# (version, migration), in order. The version a database is at is the last one applied.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _v1_core_tables),
    (2, _v2_prompt_search),
    (3, _v3_finetune),
    (4, _v4_exactly_once),
    (5, _v5_stemmed_search),
    (6, _v6_favourites_boards_trash),
]
LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar()
    return int(row or 0)


def migrate(db: Database) -> int:
    """Bring `db` to LATEST_VERSION; returns the version it is at. Safe to call from several
    processes at once: the write transaction (BEGIN IMMEDIATE) serialises them."""
    with db.engine.begin() as conn:
        version = current_version(conn)
        if version > LATEST_VERSION:
            raise RuntimeError(
                f"database {db.path} is at schema version {version}, newer than this code "
                f"({LATEST_VERSION}); upgrade the app"
            )
        for target, migration in MIGRATIONS:
            if target > version:
                log.info("migrating %s to schema version %d (%s)", db.path, target, migration.__name__)
                migration(conn)
                conn.execute(text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": target})
                version = target
    return version
