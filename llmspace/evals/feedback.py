"""Human feedback: thumbs up/down (and a comment) on chat and RAG answers.

Two tables (migration set ``feedback``):

* ``responses`` — answers served, one row each, keyed by the id the API
  returned (``chatcmpl-...``); with the A/B variant, latency, tokens and cost.
  The serving routes record them (``record_response``); ``ab report`` reads them.
* ``feedback`` — one rating each. A rating names a ``response_id`` or carries
  the question and answer itself (the UI's thumbs, which have no id); either
  way the row keeps a copy of the question and answer, so ``export_cases``
  can turn rated answers into eval cases.

User ids and API keys are stored only as a salted hash (``hash_user``).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from llmspace.config import Settings
from llmspace.db import Migrations, connect
from llmspace.errors import NotFoundError, ValidationError

migrations = Migrations("feedback")
MAX_COMMENT_CHARS = 2000
MAX_TEXT_CHARS = 100_000


@migrations()
def m001_responses(db):
    db.execute("""
        CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            kind TEXT NOT NULL,              -- chat | rag
            variant TEXT,                    -- A/B arm, NULL when A/B is off
            user_hash TEXT,
            model TEXT,
            index_name TEXT,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            cited_json TEXT,                 -- [{"n", "chunk_id", "source", "valid"}]
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            ttft_s REAL,
            total_s REAL,
            cost_usd REAL
        )""")
    db.execute("CREATE INDEX responses_variant ON responses(variant, created_at)")


@migrations()
def m002_feedback(db):
    db.execute("""
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at REAL NOT NULL,
            response_id TEXT,
            rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
            comment TEXT,
            kind TEXT NOT NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            index_name TEXT,
            cited_json TEXT,
            variant TEXT,
            user_hash TEXT
        )""")
    db.execute("CREATE INDEX feedback_response ON feedback(response_id)")


@migrations()
def m003_responses_finish_reason(db):
    # stop | length | cancelled (the client went away mid-stream: the answer is partial)
    db.execute("ALTER TABLE responses ADD COLUMN finish_reason TEXT")


@migrations()
def m010_responses_by_time(db):
    # retention deletes by age and keeps the newest rows: both walk this index
    db.execute("CREATE INDEX IF NOT EXISTS responses_created ON responses(created_at)")


def hash_user(key: str | None, salt: str = "llmspace") -> str | None:
    if not key:
        return None
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()[:16]


def normalize_rating(rating) -> int:
    table = {"up": 1, "down": -1, "+1": 1, "-1": -1, "1": 1, "good": 1, "bad": -1, "👍": 1, "👎": -1}
    if isinstance(rating, bool):
        return 1 if rating else -1
    if isinstance(rating, int) and rating in (1, -1):
        return rating
    if isinstance(rating, str) and rating.strip().lower() in table:
        return table[rating.strip().lower()]
    raise ValidationError(f"rating must be \"up\" or \"down\" (or 1 / -1); got {rating!r}.", param="rating")


def record_response(db_path: Path | str, *, id: str, kind: str, question: str, answer: str,
                    model: str | None = None, variant: str | None = None, user_key: str | None = None,
                    index: str | None = None, cited: list[dict] | None = None, prompt_tokens: int | None = None,
                    completion_tokens: int | None = None, ttft_s: float | None = None,
                    total_s: float | None = None, cost_usd: float | None = None,
                    max_rows: int = Settings.model_fields["responses_max_rows"].default,
                    max_days: float = Settings.model_fields["responses_max_days"].default,
                    finish_reason: str | None = None) -> None:
    with connect(db_path, migrations) as db:
        db.execute("INSERT OR REPLACE INTO responses (id, created_at, kind, variant, user_hash, model, index_name, "
                   "question, answer, cited_json, prompt_tokens, completion_tokens, ttft_s, total_s, cost_usd, "
                   "finish_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (id, time.time(), kind, variant, hash_user(user_key), model, index, question[:MAX_TEXT_CHARS],
                    answer[:MAX_TEXT_CHARS], json.dumps(cited) if cited is not None else None, prompt_tokens,
                    completion_tokens, ttft_s, total_s, cost_usd, finish_reason))
        prune_responses(db, max_rows, max_days)  # on each write: the table never outgrows the settings


def prune_responses(db, max_rows: int = 0, max_days: float = 0, now: float | None = None) -> int:
    """Drop recorded answers past the retention settings (``responses_max_rows``, ``responses_max_days``;
    0: no limit); returns how many went. Ratings keep their own copy of question and answer."""
    gone = 0
    if max_days:
        cutoff = (time.time() if now is None else now) - max_days * 86400
        gone += db.execute("DELETE FROM responses WHERE created_at < ?", (cutoff,)).rowcount
    if max_rows:
        gone += db.execute("DELETE FROM responses WHERE rowid IN (SELECT rowid FROM responses "
                           "ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)", (max_rows,)).rowcount
    return gone


def get_response(db_path: Path | str, response_id: str) -> dict | None:
    with connect(db_path, migrations) as db:
        row = db.execute("SELECT * FROM responses WHERE id = ?", (response_id,)).fetchone()
    return dict(row) if row else None


def add_feedback(db_path: Path | str, *, rating, response_id: str | None = None, comment: str | None = None,
                 question: str | None = None, answer: str | None = None, kind: str | None = None,
                 index: str | None = None, cited: list[dict] | None = None, user_key: str | None = None) -> dict:
    """Store one rating; returns the stored row. Raises ``ValidationError`` /
    ``NotFoundError`` with what to send instead."""
    value = normalize_rating(rating)
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise ValidationError(f"comment is {len(comment)} characters; the limit is {MAX_COMMENT_CHARS}.",
                              param="comment")
    variant = None
    if response_id:
        resp = get_response(db_path, response_id)
        if resp is None and not (question and answer):
            raise NotFoundError(f"No response with id {response_id!r} is recorded here. Send `question` and "
                                "`answer` with the rating instead.", param="response_id")
        if resp is not None:
            question, answer = question or resp["question"], answer or resp["answer"]
            kind, index, variant = kind or resp["kind"], index or resp["index_name"], resp["variant"]
            cited = cited if cited is not None else (json.loads(resp["cited_json"]) if resp["cited_json"] else None)
    if not question or not str(question).strip():
        raise ValidationError("Feedback needs the `question` (or a known `response_id`).", param="question")
    if not answer or not str(answer).strip():
        raise ValidationError("Feedback needs the `answer` (or a known `response_id`).", param="answer")
    kind = kind or ("rag" if index else "chat")
    if kind not in ("chat", "rag"):
        raise ValidationError(f"kind must be \"chat\" or \"rag\"; got {kind!r}.", param="kind")
    with connect(db_path, migrations) as db:
        cur = db.execute("INSERT INTO feedback (created_at, response_id, rating, comment, kind, question, answer, "
                         "index_name, cited_json, variant, user_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (time.time(), response_id, value, comment or None, kind, question[:MAX_TEXT_CHARS],
                          answer[:MAX_TEXT_CHARS], index, json.dumps(cited) if cited is not None else None, variant,
                          hash_user(user_key)))
        row = db.execute("SELECT * FROM feedback WHERE id = ?", (cur.lastrowid,)).fetchone()
    return _feedback_dict(row)


def list_feedback(db_path: Path | str, limit: int = 100, rating: int | None = None) -> list[dict]:
    q, args = "SELECT * FROM feedback", []
    if rating is not None:
        q += " WHERE rating = ?"
        args.append(rating)
    q += " ORDER BY id DESC LIMIT ?"
    with connect(db_path, migrations) as db:
        return [_feedback_dict(r) for r in db.execute(q, (*args, limit))]


def _feedback_dict(row) -> dict:
    d = dict(row)
    d["rating"] = "up" if d["rating"] == 1 else "down"
    d["cited"] = json.loads(d.pop("cited_json")) if d.get("cited_json") else []
    return d


def export_cases(db_path: Path | str, rating: str = "all", limit: int = 10_000) -> list[dict]:
    """Rated answers as eval cases (valid against schema.json).

    * thumbs-up: the answer becomes the case's ``reference``; a RAG answer's
      valid cited sources become ``gold_sources`` with ``must_cite: "gold"``.
    * thumbs-down: a regression case — the bad answer's first line must not
      come back (``not_contains``); RAG cases must cite a source.
    The comment goes to ``notes``. Review the cases before relying on them.
    """
    if rating not in ("all", "up", "down"):
        raise ValidationError(f"rating filter must be all, up or down; got {rating!r}.", param="rating")
    rows = list_feedback(db_path, limit=limit, rating=None if rating == "all" else (1 if rating == "up" else -1))
    cases = []
    for fb in reversed(rows):  # oldest first
        case: dict = {"id": f"feedback-{fb['id']}", "question": fb["question"]}
        if fb["kind"] == "rag" and fb["index_name"]:
            case["index"] = fb["index_name"]
        asserts: list[dict] = []
        if fb["rating"] == "up":
            case["reference"] = fb["answer"]
            gold = sorted({c["source"] for c in fb["cited"] if c.get("valid", True) and c.get("source")})
            if "index" in case and gold:
                case["gold_sources"] = gold
                asserts.append({"type": "must_cite", "value": "gold"})
            elif "index" in case:
                asserts.append({"type": "must_cite"})
        else:
            first = next((ln.strip() for ln in fb["answer"].splitlines() if ln.strip()), "")[:80]
            if first:
                asserts.append({"type": "not_contains", "value": first, "case_sensitive": True})
            if "index" in case:
                asserts.append({"type": "must_cite"})
        case["assertions"] = asserts
        case["tags"] = ["feedback", f"thumbs-{fb['rating']}", fb["kind"]]
        if fb.get("comment"):
            case["notes"] = fb["comment"]
        cases.append(case)
    return cases


def write_cases_jsonl(cases: list[dict], path: Path | str) -> Path:
    from llmspace.evals.report import atomic_write

    path = Path(path)
    atomic_write(path, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases))
    return path
