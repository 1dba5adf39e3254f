"""SQLite engine setup: WAL, busy timeout, foreign keys, and explicit transaction kinds.

pysqlite's implicit, deferred BEGIN lets a reader later try to upgrade to a write lock; in WAL
mode that upgrade can fail with SQLITE_BUSY at once, busy timeout or not. So every write
transaction starts with BEGIN IMMEDIATE (it waits for the write lock up front, honouring the
busy timeout) and reads use a plain deferred BEGIN. Two engines keep the two kinds apart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from seedling.storage.files import StorageError, display_path, storage_problem

BUSY_TIMEOUT_MS = 10_000


def _make_engine(path: Path, begin_statement: str) -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql(begin_statement)

    return engine


class Database:
    """One SQLite file, a write engine (BEGIN IMMEDIATE) and a read engine (deferred BEGIN)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_engine = _make_engine(self.path, "BEGIN IMMEDIATE")
        self._read_engine = _make_engine(self.path, "BEGIN")
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        return self._write_engine

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction: commits on success, rolls back on error. A full
        disk or a read-only database becomes a StorageError whose text a person can act on."""
        try:
            with self._write_sessions() as session, session.begin():
                yield session
        except OperationalError as err:
            message = storage_problem(err, what=f"write to the history database {display_path(self.path)}")
            if message is None:
                raise
            raise StorageError(message) from err

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; nothing it does is committed."""
        with self._read_sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

    def dispose(self) -> None:
        self._write_engine.dispose()
        self._read_engine.dispose()
