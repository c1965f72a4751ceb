"""The RAG HTTP routes over the real app (in-process) with the real models."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from test_rag_docs import BEES, TEA

from llmspace.config import Settings
from llmspace.services import Services

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(tmp_path_factory, session_services):
    from llmspace.serve.app import create_app

    home = tmp_path_factory.mktemp("rag_api_home")
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    services = Services(Settings.load(env={}, home=home))
    services.__dict__["embedder"] = session_services.embedder
    services.__dict__["engine"] = session_services.engine
    with TestClient(create_app(services, with_ui=False)) as c:
        r = c.post("/v1/rag/indexes/notes", files=[("files", ("bees.md", BEES.encode())),
                                                   ("files", ("tea.md", TEA.encode())),
                                                   ("files", ("x.bin", b"\x00\x01"))])
        assert r.status_code == 200, r.text
        assert r.json()["documents"] == 2 and r.json()["skipped"][0]["source"] == "x.bin"
        yield c


def test_search_returns_chunks_with_scores(client):
    r = client.post("/v1/rag/search", json={"index": "notes", "query": "绿茶用多少度的水冲泡？", "top_k": 2})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits[0]["source"] == "tea.md" and hits[0]["rank"] == 1 and "bm25" in hits[0]["scores"]
    assert {"start", "end", "heading", "text", "score"} <= set(hits[0])


def test_answer_has_citations_sources_and_usage(client):
    r = client.post("/v1/rag/answer", json={"index": "notes", "question": "绿茶用多少度的水冲泡？"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "extractive" and body["id"].startswith("rag-")
    cite = body["citations"][0]
    assert cite["valid"] and cite["source"] == "tea.md" and cite["snippet"] and cite["end"] > cite["start"]
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} == set(body["usage"])
    passage = client.get(f"/v1/rag/indexes/notes/chunks/{body['sources'][0]['id']}").json()
    assert passage["text"] == body["sources"][0]["text"]


def test_answer_streams_deltas_then_the_answer(client):
    with client.stream("POST", "/v1/rag/answer", json={"index": "notes", "question": "How do bees stay warm in "
                                                       "winter?", "stream": True, "max_tokens": 32}) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    bodies = [json.loads(e) for e in events[:-1]]
    assert all(b["type"] == "delta" for b in bodies[:-1]) and len(bodies) >= 2
    final = bodies[-1]
    assert final["type"] == "answer" and any(c["valid"] and c["source"] == "bees.md" for c in final["citations"])


def test_errors_are_clear(client):
    r = client.post("/v1/rag/answer", json={"index": "nope", "question": "hi"})
    assert r.status_code == 404 and "No index named 'nope'" in r.json()["error"]["message"]
    r = client.post("/v1/rag/search", json={"index": "notes", "query": "  "})
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    r = client.post("/v1/rag/indexes/evil", files=[("files", ("../../etc/passwd", b"root:x:0:0"))])
    assert r.status_code == 400 and "not a plain file name" in r.json()["error"]["message"]
    r = client.post("/v1/rag/indexes/empty", files=[("files", ("a.exe", b"MZ"))])
    assert r.status_code == 400 and "every file was skipped" in r.json()["error"]["message"]
    r = client.post("/v1/rag/search", json={"index": "notes", "query": "x", "typo": 1})
    assert r.status_code == 400
    names = [i["name"] for i in client.get("/v1/rag/indexes").json()["data"]]
    assert names == ["notes"]
