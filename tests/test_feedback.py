"""Human feedback through the HTTP API, stored in SQLite, exported as eval cases."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from llmspace.evals.cases import parse_case
from llmspace.evals.feedback import add_feedback, export_cases, record_response
from llmspace.services import Services


@pytest.fixture
def client(settings):
    """The real app (API only, no model loaded): our router is included once."""
    from llmspace.serve import app as app_module
    from llmspace.serve import eval_routes

    app = app_module.create_app(Services(settings), with_ui=False)
    if not any(getattr(r, "path", "") == "/v1/feedback" for r in app.routes):
        app.include_router(eval_routes.router)
    return TestClient(app)


def test_feedback_by_response_id_and_inline_appears_in_the_export(client, settings, capsys):
    record_response(settings.db_path, id="chatcmpl-1", kind="rag", index="roadmap", question="What is RRF?",
                    answer="Reciprocal rank fusion [1].", cited=[{"n": 1, "chunk_id": "05-rag:3",
                                                                  "source": "en/05-rag.md", "valid": True}],
                    prompt_tokens=50, completion_tokens=8, total_s=1.2, variant="b", user_key="user:ann")
    r = client.post("/v1/feedback", json={"response_id": "chatcmpl-1", "rating": "up", "comment": "clear"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rating"] == "up" and body["question"] == "What is RRF?" and body["variant"] == "b"
    assert "user_hash" not in body
    r = client.post("/v1/feedback", json={"rating": "down", "question": "Say hi", "answer": "Bonjour!\nmore",
                                          "kind": "chat", "user": "bob"})
    assert r.status_code == 200, r.text

    listed = client.get("/v1/feedback").json()["data"]
    assert [f["rating"] for f in listed] == ["down", "up"]

    exported = [json.loads(line) for line in client.get("/v1/feedback/export").text.splitlines()]
    up, down = exported
    assert up["question"] == "What is RRF?" and up["index"] == "roadmap"
    assert up["gold_sources"] == ["en/05-rag.md"] and up["reference"] == "Reciprocal rank fusion [1]."
    assert {"type": "must_cite", "value": "gold"} in up["assertions"] and up["notes"] == "clear"
    assert down["assertions"] == [{"type": "not_contains", "value": "Bonjour!", "case_sensitive": True}]
    assert "thumbs-down" in down["tags"]
    for c in exported:  # valid against the eval-set format
        errs, case = parse_case(c)
        assert errs == [] and case is not None

    # the same through the CLI, to a file that `eval run` accepts
    from llmspace.cli import main

    out = settings.home / "fb.jsonl"
    assert main(["feedback", "export", "--rating", "up", "--out", str(out)]) == 0
    assert [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()] == [up["id"]]
    assert main(["eval", "validate", str(out)]) == 0
    assert main(["feedback", "ls"]) == 0
    assert "What is RRF?" in capsys.readouterr().out


@pytest.mark.parametrize("payload, status, words", [
    ({"rating": "meh", "question": "q", "answer": "a"}, 400, "rating"),
    ({"rating": "up"}, 400, "question"),
    ({"rating": "up", "response_id": "chatcmpl-unknown"}, 404, "No response with id"),
    ({"rating": "up", "question": "q", "answer": "a", "bogus": 1}, 400, "bogus"),
    ({"rating": "up", "question": "q", "answer": "a", "comment": "x" * 2001}, 400, "comment"),
])
def test_bad_feedback_is_rejected_clearly(client, payload, status, words):
    r = client.post("/v1/feedback", json=payload)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"] or words == r.json()["error"].get("param")


def test_feedback_library_normalises_ratings(settings):
    row = add_feedback(settings.db_path, rating=-1, question="q", answer="a")
    assert row["rating"] == "down" and row["kind"] == "chat"
    assert export_cases(settings.db_path, rating="up") == []
