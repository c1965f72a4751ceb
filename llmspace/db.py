"""A small SQLite layer with numbered migrations (after simonw/llm).

Each feature that stores rows owns a ``Migrations`` set, declared next to the
code that uses it::

    migrations = Migrations("evals")

    @migrations()
    def m001_runs(db):
        db.execute("CREATE TABLE eval_runs (...)")

    with connect(settings.db_path, migrations) as db:
        db.execute("INSERT ...")

``connect`` opens the database (creating its folder), applies every migration
of the given sets that this file has not seen yet, in name order, each in its
own transaction, and records it in ``_llmspace_migrations``. So evals, feedback
and (later) the request log share one file and one mechanism without knowing
about each other. WAL mode and a busy timeout let the server's threads and a
CLI process use the file at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

MIGRATIONS_TABLE = "_llmspace_migrations"

Migration = Callable[[sqlite3.Connection], None]


class Migrations:
    """An ordered, named set of schema changes. Names sort in application order
    (``m001_...``, ``m002_...``); a name, once applied, is never run again."""

    def __init__(self, name: str):
        self.name = name
        self.steps: list[tuple[str, Migration]] = []

    def __call__(self) -> Callable[[Migration], Migration]:
        def register(fn: Migration) -> Migration:
            if any(n == fn.__name__ for n, _ in self.steps):
                raise ValueError(f"migration {self.name}.{fn.__name__} is declared twice")
            self.steps.append((fn.__name__, fn))
            return fn

        return register

    def pending(self, db: sqlite3.Connection) -> list[tuple[str, Migration]]:
        done = {r[0] for r in db.execute(
            f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ?", (self.name,))}
        return [(n, fn) for n, fn in sorted(self.steps) if n not in done]

    def apply(self, db: sqlite3.Connection) -> list[str]:
        """Apply what is pending in one write transaction; return the names applied.
        ``BEGIN IMMEDIATE`` takes the write lock first, so two processes starting
        together do not both run the same migration."""
        ensure_migrations_table(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            applied = []
            for name, fn in self.pending(db):
                fn(db)
                db.execute(f"INSERT INTO {MIGRATIONS_TABLE} (migration_set, name, applied_at) VALUES (?, ?, ?)",
                           (self.name, name, time.time()))
                applied.append(name)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return applied


def ensure_migrations_table(db: sqlite3.Connection) -> None:
    db.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
               "migration_set TEXT NOT NULL, name TEXT NOT NULL, applied_at REAL NOT NULL, "
               "PRIMARY KEY (migration_set, name))")


_migrated: set[tuple[str, str]] = set()  # (db file, set name) already brought up to date in this process
_migrate_lock = threading.Lock()


def open_db(path: Path | str, *sets: Migrations) -> sqlite3.Connection:
    """Open ``path`` with rows as ``sqlite3.Row`` and bring ``sets`` up to date.
    The caller closes the connection (or uses ``connect``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we open transactions ourselves (``with db:`` / BEGIN),
    # so a long-running reader never holds a write lock by accident.
    db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt; far fewer fsyncs
    key = str(path.resolve())
    todo = [s for s in sets if (key, s.name) not in _migrated]
    if todo:
        with _migrate_lock:
            for s in todo:
                s.apply(db)
                _migrated.add((key, s.name))
    return db


@contextmanager
def connect(path: Path | str, *sets: Migrations) -> Iterator[sqlite3.Connection]:
    """``with connect(settings.db_path, migrations) as db:`` — open, migrate, close."""
    db = open_db(path, *sets)
    try:
        yield db
    finally:
        db.close()


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """An explicit write transaction (the connection runs in autocommit mode)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def applied_migrations(db: sqlite3.Connection) -> list[tuple[str, str]]:
    ensure_migrations_table(db)
    return [(r[0], r[1]) for r in db.execute(
        f"SELECT migration_set, name FROM {MIGRATIONS_TABLE} ORDER BY migration_set, name")]
