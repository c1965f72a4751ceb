"""Online traffic through the library calls every shell makes: A/B arms and
recorded answers for chat and RAG (HTTP, UI and CLI alike), and a stream the
client abandons recorded as "cancelled". Real models (SmolLM2, MiniLM)."""

from __future__ import annotations

import json
import logging

import pytest
from test_rag_docs import BEES, TEA

from llmspace.config import Settings
from llmspace.engine.base import GenerationParams
from llmspace.evals.feedback import get_response
from llmspace.services import Services

pytestmark = pytest.mark.slow

HI = [{"role": "user", "content": "Say hello."}]
LONG = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]


def _services(session_services, tmp_path, ab: dict | None) -> Services:
    home = tmp_path / "home"
    home.mkdir(parents=True)
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    services = Services(Settings.load(env={}, home=home, ab=json.dumps(ab) if ab else None))
    services.__dict__["engine"] = session_services.engine  # one model in memory for all tests
    services.__dict__["embedder"] = session_services.embedder
    return services


def _rows(services) -> list[dict]:
    from llmspace.db import connect
    from llmspace.evals.feedback import migrations

    with connect(services.settings.db_path, migrations) as db:
        return [dict(r) for r in db.execute("SELECT * FROM responses ORDER BY created_at")]


AB = {"split": 0.5, "a": {"name": "control"}, "b": {"name": "terse", "system_prompt": "Be terse."}}


def test_a_library_chat_gets_a_variant_and_is_recorded_under_its_id(session_services, tmp_path):
    from llmspace.chat import chat

    services = _services(session_services, tmp_path, AB)
    c = chat(services, HI, GenerationParams(max_new_tokens=4), user_key="cli:alice")
    assert c.variant in ("control", "terse") and c.id.startswith("chatcmpl-")
    row = get_response(services.settings.db_path, c.id)
    assert row["variant"] == c.variant and row["answer"] == c.text and row["question"] == "Say hello."
    assert row["finish_reason"] == c.finish_reason and row["completion_tokens"] == c.usage.completion_tokens
    # the same user keeps the same arm
    assert chat(services, HI, GenerationParams(max_new_tokens=2), user_key="cli:alice").variant == c.variant
    # offline work (eval runs) is neither assigned nor recorded
    off = chat(services, HI, GenerationParams(max_new_tokens=2), online=False)
    assert off.variant is None and get_response(services.settings.db_path, off.id) is None


def test_a_ui_chat_is_assigned_and_recorded(session_services, tmp_path):
    from llmspace.ui.chat_tab import respond

    services = _services(session_services, tmp_path, AB)
    *_, (history, stats) = respond(services, "Say hello.", [], "", 0.0, 1.0, 0, 4, -1, user_key="ui:session-1")
    [row] = _rows(services)
    assert row["variant"] in ("control", "terse") and row["kind"] == "chat"
    assert row["answer"] == history[-1]["content"] and row["finish_reason"] in ("stop", "length")


def test_a_chat_stream_the_client_abandons_is_recorded_as_cancelled(session_services, tmp_path, caplog):
    from llmspace.chat import chat_stream

    services = _services(session_services, tmp_path, None)
    stream = chat_stream(services, LONG, GenerationParams(max_new_tokens=64), response_id="chatcmpl-gone")
    got = "".join(next(stream).text for _ in range(3))
    with caplog.at_level(logging.INFO, logger="llmspace.online"):
        stream.close()  # what a server does with the generator of a client that went away
    row = get_response(services.settings.db_path, "chatcmpl-gone")
    assert row["finish_reason"] == "cancelled" and row["answer"] == got and row["variant"] is None
    assert "chatcmpl-gone cancelled" in caplog.text
    # the model is free again (the engine's stream was closed, not left holding it)
    assert list(chat_stream(services, HI, GenerationParams(max_new_tokens=2)))[-1].finish_reason


def test_http_stream_dropped_by_the_client_is_recorded(session_services, tmp_path):
    """A real server and a client that hangs up after a few chunks."""
    import threading
    import time

    import httpx
    import uvicorn
    from conftest import _free_port

    from llmspace.serve.app import create_app

    services = _services(session_services, tmp_path, AB)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(services, with_ui=False), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        body = {"messages": LONG, "stream": True, "max_tokens": 200, "user": "bob"}
        with httpx.Client(timeout=60) as client:
            with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                variant = r.headers["x-llmspace-variant"]
                lines = r.iter_lines()
                first = json.loads(next(x for x in lines if x.startswith("data: "))[6:])
                for _ in range(4):
                    next(lines)
        deadline = time.monotonic() + 30
        while (row := get_response(services.settings.db_path, first["id"])) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert row is not None, "the dropped stream was not recorded"
        assert row["finish_reason"] == "cancelled" and row["variant"] == variant
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_rag_variant_s_retrieval_options_reach_the_retriever(session_services, tmp_path):
    ab = {"split": 1.0, "a": {"name": "wide"}, "b": {"name": "narrow", "retrieval": {"top_k": 1, "mode": "bm25"}}}
    services = _services(session_services, tmp_path, ab)
    services.rag.build_from_uploads("notes", [("bees.md", BEES.encode()), ("tea.md", TEA.encode())])
    q = "How do bees stay warm in winter?"
    stream = services.rag.stream_answer(q, "notes", mode="extractive", top_k=5, retrieval_mode="hybrid",
                                        user_key="ui:s")
    assert stream.variant == "narrow"
    *_, answer = stream
    [hit] = answer.sources  # top_k 1, ranked by BM25 alone (dense did not rank)
    assert hit.score == hit.scores["bm25"] and "dense_rank" not in hit.scores
    row = get_response(services.settings.db_path, stream.id)
    assert row["variant"] == "narrow" and row["kind"] == "rag" and row["index_name"] == "notes"
    # without A/B the request's own options apply
    plain = _services(session_services, tmp_path / "plain", None)
    plain.rag.build_from_uploads("notes", [("bees.md", BEES.encode()), ("tea.md", TEA.encode())])
    sources = plain.rag.answer(q, "notes", mode="extractive", top_k=5).sources
    assert len(sources) > 1 and "dense_rank" in sources[0].scores
