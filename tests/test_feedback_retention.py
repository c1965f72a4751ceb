"""The ``responses`` table keeps what the retention settings allow, pruned on each write (issue #9)."""

from __future__ import annotations

import sqlite3
import time

from llmspace.config import Settings
from llmspace.evals.feedback import add_feedback, get_response, record_response


def _ids(db_path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return [r[0] for r in db.execute("SELECT id FROM responses ORDER BY created_at")]


def test_only_the_newest_rows_are_kept(settings):
    for i in range(5):
        record_response(settings.db_path, id=f"r{i}", kind="chat", question="q", answer="a", max_rows=3)
    assert _ids(settings.db_path) == ["r2", "r3", "r4"]


def test_rows_older_than_the_age_limit_go_on_the_next_write(settings):
    record_response(settings.db_path, id="old", kind="chat", question="q", answer="a")
    add_feedback(settings.db_path, rating="up", response_id="old")
    with sqlite3.connect(settings.db_path) as db:
        db.execute("UPDATE responses SET created_at = ? WHERE id = 'old'", (time.time() - 91 * 86400,))
    record_response(settings.db_path, id="new", kind="chat", question="q", answer="a")  # default: 90 days
    assert _ids(settings.db_path) == ["new"] and get_response(settings.db_path, "old") is None
    # the rating kept its own copy of the question and answer
    with sqlite3.connect(settings.db_path) as db:
        assert db.execute("SELECT question, answer FROM feedback WHERE response_id = 'old'").fetchone() == ("q", "a")


def test_zero_means_no_limit_and_settings_carry_the_bounds(llmspace_home):
    s = Settings.load(env={"LLMSPACE_RESPONSES_MAX_ROWS": "0", "LLMSPACE_RESPONSES_MAX_DAYS": "0"},
                      home=llmspace_home)
    assert (s.responses_max_rows, s.responses_max_days) == (0, 0)
    assert (Settings.load().responses_max_rows, Settings.load().responses_max_days) == (100_000, 90)
    for i in range(4):
        record_response(s.db_path, id=f"r{i}", kind="chat", question="q", answer="a",
                        max_rows=s.responses_max_rows, max_days=s.responses_max_days)
    assert len(_ids(s.db_path)) == 4
