"""The SQLite layer: numbered migrations per set, applied once, in order, atomically."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from llmspace.db import Migrations, applied_migrations, connect, open_db, transaction


def make_set(name="demo"):
    m = Migrations(name)

    @m()
    def m002_add_col(db):
        db.execute("ALTER TABLE items ADD COLUMN note TEXT")

    @m()
    def m001_items(db):
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")

    return m


def test_migrations_run_in_name_order_once(tmp_path):
    path = tmp_path / "sub" / "x.db"
    m = make_set()
    with connect(path, m) as db:
        db.execute("INSERT INTO items (name, note) VALUES ('a', 'n')")
    assert m.apply(sqlite3.connect(path)) == []  # already applied
    with connect(path, m) as db:
        assert applied_migrations(db) == [("demo", "m001_items"), ("demo", "m002_add_col")]
        assert db.execute("SELECT name, note FROM items").fetchone()["note"] == "n"


def test_two_sets_share_one_file_and_a_later_migration_is_picked_up(tmp_path):
    path = tmp_path / "x.db"
    m = make_set("one")
    with connect(path, m):
        pass
    other = Migrations("two")

    @other()
    def m001_logs(db):
        db.execute("CREATE TABLE logs (id INTEGER PRIMARY KEY)")

    @m()
    def m003_index(db):
        db.execute("CREATE INDEX items_name ON items(name)")

    db = open_db(path, other)
    assert ("two", "m001_logs") in applied_migrations(db)
    assert m.apply(db) == ["m003_index"]
    db.close()


def test_a_failing_migration_leaves_nothing_half_applied(tmp_path):
    m = Migrations("bad")

    @m()
    def m001_ok(db):
        db.execute("CREATE TABLE t (x)")

    @m()
    def m002_broken(db):
        db.execute("CREATE TABLE u (y)")
        raise RuntimeError("boom")

    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    with pytest.raises(RuntimeError):
        m.apply(db)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "t" not in tables and "u" not in tables


def test_duplicate_names_and_transactions(tmp_path):
    m = make_set()
    with pytest.raises(ValueError, match="declared twice"):
        @m()
        def m001_items(db):  # noqa: F811
            pass
    with connect(tmp_path / "x.db", make_set()) as db:
        with pytest.raises(RuntimeError):
            with transaction(db):
                db.execute("INSERT INTO items (name) VALUES ('x')")
                raise RuntimeError
        assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0


def test_concurrent_writers(tmp_path):
    path = tmp_path / "x.db"
    m = make_set()

    def write(n):
        for i in range(20):
            with connect(path, m) as db:
                db.execute("INSERT INTO items (name) VALUES (?)", (f"{n}-{i}",))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with connect(path, m) as db:
        assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 80
