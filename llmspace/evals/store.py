"""Run history in SQLite (``settings.db_path``).

A run row is written ``running`` before the first case, each case's result as
it finishes, and the row is marked ``complete`` only at the very end, in the
same transaction as its metrics. Ctrl-C marks it ``incomplete`` (with metrics
over the cases that finished); an unexpected crash marks it ``failed``; a
process killed outright leaves ``running``, which ``eval ls`` shows as such.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llmspace.db import Migrations, connect, open_db, transaction
from llmspace.errors import NotFoundError
from llmspace.evals.results import CaseResult

migrations = Migrations("evals")


@migrations()
def m001_eval_runs(db):
    db.execute("""
        CREATE TABLE eval_runs (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            finished_at REAL,
            status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'incomplete', 'failed')),
            set_name TEXT NOT NULL,
            set_path TEXT NOT NULL,
            dataset_sha256 TEXT NOT NULL,
            git_rev TEXT,
            n_cases INTEGER NOT NULL,
            config_json TEXT NOT NULL,
            metrics_json TEXT,
            note TEXT
        )""")
    db.execute("""
        CREATE TABLE eval_results (
            run_id TEXT NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            case_id TEXT NOT NULL,
            passed INTEGER NOT NULL,
            error TEXT,
            record_json TEXT NOT NULL,
            PRIMARY KEY (run_id, case_id)
        )""")
    db.execute("CREATE INDEX eval_runs_created ON eval_runs(created_at)")


@dataclass
class RunRecord:
    id: str
    created_at: float
    finished_at: float | None
    status: str
    set_name: str
    set_path: str
    dataset_sha256: str
    git_rev: str | None
    n_cases: int
    config: dict
    metrics: dict | None
    note: str | None = None
    results: list[CaseResult] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def to_dict(self, with_results: bool = True) -> dict:
        d = {k: getattr(self, k) for k in ("id", "created_at", "finished_at", "status", "set_name", "set_path",
                                           "dataset_sha256", "git_rev", "n_cases", "config", "metrics", "note")}
        if with_results:
            d["results"] = [r.to_dict() for r in self.results]
        return d


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class RunStore:
    def __init__(self, db_path: Path | str):
        self.db_path = Path(db_path)
        self._conn = None

    @contextmanager
    def _db(self):
        if self._conn is not None:
            yield self._conn
        else:
            with connect(self.db_path, migrations) as db:
                yield db

    @contextmanager
    def session(self):
        """Keep one connection open (a run writes a row per case; closing a WAL
        database checkpoints it, ~10 ms each time)."""
        if self._conn is not None:
            yield self
            return
        self._conn = open_db(self.db_path, migrations)
        try:
            yield self
        finally:
            self._conn.close()
            self._conn = None

    def start(self, *, set_name: str, set_path: str, sha256: str, git_rev: str | None, n_cases: int,
              config: dict) -> str:
        run_id = new_run_id()
        with self._db() as db:
            db.execute("INSERT INTO eval_runs (id, created_at, status, set_name, set_path, dataset_sha256, git_rev, "
                       "n_cases, config_json) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                       (run_id, time.time(), set_name, set_path, sha256, git_rev, n_cases, json.dumps(config)))
        return run_id

    def add_result(self, run_id: str, seq: int, result: CaseResult) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO eval_results (run_id, seq, case_id, passed, error, record_json) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, seq, result.case_id, int(result.passed), result.error,
                        json.dumps(result.to_dict(), ensure_ascii=False)))

    def finish(self, run_id: str, status: str, metrics: dict | None, note: str | None = None) -> None:
        with self._db() as db, transaction(db):
            db.execute("UPDATE eval_runs SET status = ?, metrics_json = ?, finished_at = ?, note = ? WHERE id = ?",
                       (status, json.dumps(metrics) if metrics is not None else None, time.time(), note, run_id))

    # ------------------------------------------------------------------ reads
    def list(self, limit: int = 50) -> list[RunRecord]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM eval_runs ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)).fetchall()
        return [_record(r) for r in rows]

    def resolve(self, ref: str) -> str:
        """A run id, a unique prefix of one, ``latest``, or ``latest~N``."""
        with self._db() as db:
            m = re.fullmatch(r"latest(?:~(\d+))?", ref)
            if m:
                row = db.execute("SELECT id FROM eval_runs ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
                                 (int(m.group(1) or 0),)).fetchone()
                if row:
                    return row[0]
                raise NotFoundError(f"No eval run {ref!r}: there are fewer runs. See `llmspace eval ls`.",
                                    param="run")
            rows = db.execute("SELECT id FROM eval_runs WHERE id = ? OR id LIKE ? ORDER BY id",
                              (ref, ref.replace("%", "") + "%")).fetchall()
        ids = [r[0] for r in rows]
        if ref in ids:
            return ref
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise NotFoundError(f"No eval run {ref!r}. List runs with `llmspace eval ls`.", param="run")
        raise NotFoundError(f"Run {ref!r} is ambiguous ({', '.join(ids[:5])}...); give more of the id.", param="run")

    def get(self, ref: str, with_results: bool = True) -> RunRecord:
        run_id = self.resolve(ref)
        with self._db() as db:
            row = db.execute("SELECT * FROM eval_runs WHERE id = ?", (run_id,)).fetchone()
            rec = _record(row)
            if with_results:
                rec.results = [CaseResult.from_dict(json.loads(r["record_json"])) for r in db.execute(
                    "SELECT record_json FROM eval_results WHERE run_id = ? ORDER BY seq", (run_id,))]
        return rec

    def delete(self, ref: str) -> None:
        run_id = self.resolve(ref)
        with self._db() as db, transaction(db):
            db.execute("DELETE FROM eval_runs WHERE id = ?", (run_id,))


def _record(r) -> RunRecord:
    return RunRecord(id=r["id"], created_at=r["created_at"], finished_at=r["finished_at"], status=r["status"],
                     set_name=r["set_name"], set_path=r["set_path"], dataset_sha256=r["dataset_sha256"],
                     git_rev=r["git_rev"], n_cases=r["n_cases"], config=json.loads(r["config_json"]),
                     metrics=json.loads(r["metrics_json"]) if r["metrics_json"] else None, note=r["note"])
