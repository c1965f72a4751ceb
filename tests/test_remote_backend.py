"""backend=remote: llmspace in front of an OpenAI-compatible server.

The live server is a second, real llmspace process on loopback (the slow tests);
the faults are real HTTP servers too (stdlib ``http.server`` in a thread) that
are down, slow, or answer garbage. Every fault must end in a clear
``UpstreamError`` (HTTP 502) in bounded time, never a hang.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from server_helpers import serve

from llmspace.config import Settings
from llmspace.engine import complete, create_engine
from llmspace.engine.base import GenerationParams, Message
from llmspace.errors import ConfigError, ContextLengthError, ServerBusyError, UpstreamError
from llmspace.services import Services

QUESTION = [Message("user", "What is the capital of France?")]
GREEDY = GenerationParams(max_new_tokens=24)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _remote(url: str, **kw) -> Settings:
    return Settings.load(env={}, backend="remote", remote_base_url=url, **kw)


# ---------------------------------------------------------------- settings, CLI

def test_settings_and_flags_select_the_remote_backend():
    s = Settings.load(env={"LLMSPACE_BACKEND": "remote", "LLMSPACE_REMOTE_BASE_URL": "http://10.0.0.5:8000/v1/"})
    assert s.backend == "remote" and s.remote_base_url == "http://10.0.0.5:8000/v1"
    assert s.remote_timeout_s == 60 and s.remote_context_window is None
    with pytest.raises(ConfigError, match="remote_base_url") as e:
        Settings.load(env={"LLMSPACE_REMOTE_BASE_URL": "10.0.0.5:8000"})
    assert "http://host:8000/v1" in e.value.message
    with pytest.raises(ConfigError, match="--remote-url") as e:
        create_engine(Settings.load(env={}, backend="remote"))
    assert e.value.param == "remote_base_url"

    from llmspace.cli import build_parser, settings_from_args

    for argv in (["serve"], ["ask", "hi"], ["chat"], ["info"], ["eval", "run"]):
        args = build_parser().parse_args([*argv, "--backend", "remote", "--remote-url", "http://h:1/v1",
                                          "--remote-model", "m"])
        s = settings_from_args(args)
        assert (s.backend, s.remote_base_url, s.remote_model) == ("remote", "http://h:1/v1", "m"), argv


# ------------------------------------------------------------------ faults

class _Fake(BaseHTTPRequestHandler):
    """An 'OpenAI-compatible' server that misbehaves as ``server.mode`` says."""

    protocol_version = "HTTP/1.0"  # a body ends when the connection closes

    def log_message(self, *args):
        pass

    def _send(self, status: int, ctype: str, body: str, headers: dict | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _events(self, *events: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for e in events:
            self.wfile.write(f"data: {e}\n\n".encode())
            self.wfile.flush()

    def do_GET(self):
        mode = self.server.mode
        if mode == "html500":
            self._send(500, "text/html", "<html><head><title>500</title></head><body><h1>Internal Server Error</h1>"
                                         "<p>upstream crashed</p></body></html>")
        elif mode == "html200":
            self._send(200, "text/html", "<!doctype html><html><body>a web page, not an API</body></html>")
        else:
            self._send(200, "application/json", json.dumps({"object": "list", "data": [
                {"id": "fake-model", "object": "model", "max_model_len": 4096}]}))

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode, release = self.server.mode, self.server.release
        if self.path.endswith("/tokenize"):  # like llama.cpp's server: no vLLM-style chat count
            return self._send(404, "application/json", '{"detail": "Not Found"}')
        chunk = json.dumps({"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]})
        if mode == "sleep":  # accepts, then says nothing
            release.wait(30)
        elif mode == "stall":  # one chunk, then nothing
            self._events(chunk)
            release.wait(30)
        elif mode == "junk_sse":
            self._events("this is not json at all")
        elif mode == "midstream_error":
            self._events(chunk, json.dumps({"error": {"message": "CUDA out of memory", "type": "server_error"}}))
        elif mode == "cut":
            self._events(chunk)  # and the connection closes: no finish_reason, no [DONE]
        elif mode == "busy":
            self._send(503, "application/json", '{"error": {"message": "too many requests in flight"}}',
                       {"Retry-After": "7"})
        elif mode == "too_long":
            self._send(400, "application/json", json.dumps({
                "object": "error", "type": "BadRequestError", "code": 400,
                "message": "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens."}))
        elif mode == "html500":
            self._send(500, "text/html", "<html><body><h1>Internal Server Error</h1></body></html>")
        elif mode == "no_usage":
            self._events(json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
                         json.dumps({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
                         json.dumps({"choices": [{"index": 0, "delta": {"content": "lo!"}}]}),
                         json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), "[DONE]")
        elif mode == "whole_json":  # ignores stream=true
            self._send(200, "application/json", json.dumps({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}}))


@contextmanager
def fake_server(mode: str):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    server.daemon_threads = True
    server.mode, server.release = mode, threading.Event()
    server.handle_error = lambda *a: None  # a client that hung up on a sleeping handler is expected here
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@contextmanager
def within(seconds: float):
    """A fault must fail fast: no hang (generous bounds; the remote sleeps 30 s)."""
    t0 = time.monotonic()
    yield
    assert time.monotonic() - t0 < seconds


def _answer(engine, messages=QUESTION, params=GREEDY):
    return complete(engine, messages, params)


def test_nothing_listening_fails_at_once_naming_the_url():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    engine = create_engine(_remote(url))
    with within(10), pytest.raises(UpstreamError) as e:
        engine.load()
    assert e.value.code == "remote_unreachable" and url in e.value.message and "--remote-url" in e.value.message
    with within(10), pytest.raises(UpstreamError):
        _answer(create_engine(_remote(url, remote_model="m")))


def test_a_server_that_says_nothing_times_out():
    with fake_server("sleep") as url:
        engine = create_engine(_remote(url, remote_timeout_s=0.5))
        assert engine.load().model_id == "fake-model" and engine.context_window == 4096  # vLLM's max_model_len
        with within(10), pytest.raises(UpstreamError) as e:
            engine.stream(QUESTION, GREEDY)  # the request is sent at once: the call itself fails
        assert e.value.code == "remote_timeout" and "timed out" in e.value.message
        assert "0.5 s" in e.value.message and "LLMSPACE_REMOTE_TIMEOUT_S" in e.value.message


def test_a_server_that_stalls_mid_answer_times_out():
    with fake_server("stall") as url:
        deltas = create_engine(_remote(url, remote_timeout_s=0.5)).stream(QUESTION, GREEDY)
        assert next(deltas).text == "Hello"
        with within(10), pytest.raises(UpstreamError, match="timed out.*mid-answer"):
            next(deltas)


@pytest.mark.parametrize("mode, match", [
    ("html500", r"HTTP 500: '.*Internal Server Error upstream crashed"),
    ("html200", r"not JSON: '.*a web page, not an API.*/v1"),
])
def test_garbage_model_lists_are_quoted(mode, match):
    with fake_server(mode) as url:
        with within(10), pytest.raises(UpstreamError, match=match) as e:
            create_engine(_remote(url)).load()
        assert url in e.value.message and e.value.status == 502


@pytest.mark.parametrize("mode, match", [
    ("junk_sse", r"not JSON: 'this is not json at all'"),
    ("midstream_error", r"failed mid-answer: 'CUDA out of memory'"),
    ("cut", r"ended the answer without finishing it \(1 chunks of text"),
    ("html500", r"HTTP 500: '.*Internal Server Error"),
])
def test_garbage_answers_are_upstream_errors(mode, match):
    with fake_server(mode) as url:
        engine = create_engine(_remote(url))
        got = []
        with within(10), pytest.raises(UpstreamError, match=match) as e:
            for d in engine.stream(QUESTION, GREEDY):
                got.append(d.text)
        assert e.value.status == 502
        assert "".join(got) == ("Hello" if mode in ("midstream_error", "cut") else "")


def test_a_busy_remote_passes_its_retry_after_and_a_long_prompt_is_a_context_error():
    with fake_server("busy") as url:
        with pytest.raises(ServerBusyError) as e:
            _answer(create_engine(_remote(url)))
        assert e.value.retry_after == 7 and e.value.status == 503 and "too many requests" in e.value.message
    with fake_server("too_long") as url:
        with pytest.raises(ContextLengthError, match="maximum context length is 4096") as e:
            _answer(create_engine(_remote(url)))
        assert e.value.status == 400 and "Shorten the messages" in e.value.message


def test_without_server_usage_the_counts_are_what_can_be_counted_here():
    with fake_server("no_usage") as url:
        engine = create_engine(_remote(url, remote_context_window=1000))
        deltas = list(engine.stream(QUESTION, GREEDY))
        assert [d.text for d in deltas if d.text] == ["Hel", "lo!"]
        c = _answer(engine)
        assert c.text == "Hello!" and c.finish_reason == "stop" and engine.context_window == 1000  # the setting wins
        # no /tokenize on this server: the prompt is estimated (leaning high), the completion counted in chunks
        assert c.usage.completion_tokens == 2 and c.usage.prompt_tokens == engine.count_prompt_tokens(QUESTION) > 10
        assert set(c.timings) == {"ttft_s", "total_s", "tokens_per_s"}
        # a stop string the server did not apply is applied here
        assert _answer(engine, params=GenerationParams(max_new_tokens=8, stop=["lo"])).text == "Hel"
    with fake_server("whole_json") as url:
        c = _answer(create_engine(_remote(url)))
        assert (c.text, c.usage.prompt_tokens, c.usage.completion_tokens) == ("Hi there", 11, 2)


def test_the_http_api_in_front_answers_502_for_a_broken_remote():
    """The front app's own clients (the official SDK) get a 502 that says what is wrong."""
    import openai

    from llmspace.serve.app import create_app

    down = f"http://127.0.0.1:{_free_port()}/v1"
    for mode, match in ((None, "Could not connect"), ("sleep", "timed out"), ("junk_sse", "not JSON")):
        with fake_server(mode or "ok") as fake:
            app = create_app(Services(_remote(fake if mode else down, remote_timeout_s=0.5)), with_ui=False)
            with serve(app) as front:
                client = openai.OpenAI(base_url=f"{front}/v1", api_key="unused", max_retries=0, timeout=30)
                ask = dict(model="fake-model", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
                with within(20), pytest.raises(openai.APIStatusError, match=match) as e:
                    client.chat.completions.create(**ask)
                assert e.value.status_code == 502
                with within(20), pytest.raises(openai.APIError, match=match):  # streamed: 502, or an error event
                    "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **ask)
                            if c.choices)


# ------------------------------------------------- a live llmspace as the remote

@pytest.fixture(scope="module")
def backend_url(shared_models_dir, tmp_path_factory):
    """A second llmspace (torch, the real SmolLM2) served by `python -m llmspace serve` on loopback."""
    home = tmp_path_factory.mktemp("remote_backend_home")
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSPACE_")}
    env.update(LLMSPACE_HOME=str(home), LLMSPACE_PORT=str(port), LLMSPACE_WEB_EXPORT="0",
               LLMSPACE_INDEX_BUNDLED_CORPUS="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "llmspace", "serve", "--no-ui"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the backend llmspace did not start:\n" + (home / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield f"{base}/v1", home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def local_answer(session_services):
    return _answer(session_services.engine)


@pytest.fixture
def front(backend_url, session_services, tmp_path):
    """Services of a front llmspace (backend=remote) with its own home; the embedder is the session's."""
    home = tmp_path / "front"
    home.mkdir()
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    services = Services(_remote(backend_url[0], home=home))
    services.__dict__["embedder"] = session_services.embedder
    return services


@pytest.mark.slow
def test_greedy_text_equals_the_local_engine(backend_url, session_services, local_answer):
    engine = create_engine(_remote(backend_url[0]))
    c = _answer(engine)
    assert c.text == local_answer.text and c.finish_reason == local_answer.finish_reason
    assert engine.model_id == session_services.engine.model_id == "smollm2-135m-instruct"
    assert engine.context_window == session_services.engine.context_window == 8192  # from llmspace's /v1/models
    # the backend's /tokenize counts with the model's own chat template: the same count as here
    assert engine.count_prompt_tokens(QUESTION) == session_services.engine.count_prompt_tokens(QUESTION)
    assert engine.count_tokens("Paris is lovely in May.") == session_services.engine.count_tokens("Paris is lovely in May.")
    assert c.usage.to_dict() == local_answer.usage.to_dict()  # the server's usage
    stop = GenerationParams(max_new_tokens=24, stop=["Paris"])
    assert _answer(engine, params=stop).text == _answer(session_services.engine, params=stop).text


@pytest.mark.slow
def test_streaming_yields_deltas_and_closing_cancels_on_the_remote(backend_url):
    engine = create_engine(_remote(backend_url[0]))
    deltas = [d for d in engine.stream(QUESTION, GREEDY) if not d.waiting]
    assert len([d for d in deltas if d.text]) >= 3
    last = deltas[-1]
    assert last.finish_reason in ("stop", "length") and last.usage.completion_tokens > 0
    assert last.timings["total_s"] >= last.timings["ttft_s"] > 0 and last.timings["tokens_per_s"] > 0

    long = [Message("user", "Write a long story about a dragon who learns to cook.")]
    stream = engine.stream(long, GenerationParams(max_new_tokens=400))
    got = "".join(next(d for d in stream if d.text).text for _ in range(3))
    stream.close()  # the HTTP response closes: the backend sees the disconnect and cancels
    db = backend_url[1] / "llmspace.db"
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(db) as con:
            row = con.execute("SELECT finish_reason, answer FROM responses ORDER BY rowid DESC LIMIT 1").fetchone()
        if row and row[0] == "cancelled":
            break
        assert time.monotonic() < deadline, f"the backend did not cancel the abandoned answer: {row}"
        time.sleep(0.2)
    assert row[1].startswith(got)


def _cancelled(home: Path) -> int:
    with sqlite3.connect(home / "llmspace.db") as con:
        return con.execute("SELECT count(*) FROM responses WHERE finish_reason = 'cancelled'").fetchone()[0]


def _wait_for(cond, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.slow
def test_a_front_app_answers_the_openai_client(front, backend_url, local_answer):
    import httpx
    import openai

    from llmspace.serve.app import create_app

    with serve(create_app(front, with_ui=False)) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["backend"] == "remote" and health["model"] == "smollm2-135m-instruct"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert client.models.list().data[0].id == "smollm2-135m-instruct"
        ask = dict(model="smollm2-135m-instruct", messages=[{"role": "user", "content": QUESTION[0].content}],
                   max_tokens=GREEDY.max_new_tokens)
        reply = client.chat.completions.create(**ask)
        assert reply.choices[0].message.content == local_answer.text
        assert reply.usage.prompt_tokens == local_answer.usage.prompt_tokens
        chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **ask))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == local_answer.text
        assert chunks[-1].usage.completion_tokens == local_answer.usage.completion_tokens
        # over the context window (8192, as the backend reports it): refused before anything is generated
        r = httpx.post(f"{url}/v1/chat/completions", timeout=60,
                       json={**ask, "messages": [{"role": "user", "content": "Paris is lovely. " * 3000}]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text
        assert "context window is 8192" in r.json()["error"]["message"]
        # a client that hangs up on the front: the front cancels, and so does the backend
        before = _cancelled(backend_url[1])
        long = {**ask, "max_tokens": 400, "messages": [{"role": "user", "content": "Write a long story about a dragon."}]}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json={**long, "stream": True}, timeout=60) as r:
            got = 0
            for line in r.iter_lines():
                got += line.startswith("data: {") and '"content": "' in line
                if got == 4:
                    break  # and hang up
        assert got == 4
        _wait_for(lambda: _cancelled(backend_url[1]) > before, "the backend kept generating for a client that left")
        _wait_for(lambda: _cancelled(front.settings.home) >= 1, "the front did not record the answer as cancelled")


@pytest.mark.slow
def test_ui_chat_info_rag_and_evals_run_against_the_remote(front, local_answer, session_services, tmp_path, capsys):
    from test_rag_docs import BEES

    from llmspace.cli import main
    from llmspace.info import collect_info, format_info
    from llmspace.ui.chat_tab import respond

    *_, (history, stats) = respond(front, QUESTION[0].content, [], "", 0.0, 1.0, 0, GREEDY.max_new_tokens, -1)
    assert history[-1]["content"] == local_answer.text

    info = collect_info(front, load=True)
    chat = info["models"]["chat"]
    assert chat["loads"] and chat["name"] == "smollm2-135m-instruct" and chat["remote"] == front.settings.remote_base_url
    assert f"remote: {front.settings.remote_base_url}" in format_info(info)

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "bees.md").write_text(BEES)
    front.rag.build([tmp_path / "docs"], "bees")
    question = "How warm do bees keep the centre of their winter cluster?"
    answer = front.rag.answer(question, "bees", mode="generate")
    assert answer.usage.completion_tokens > 0 and answer.support["generated"]  # the remote model wrote an answer
    local = Services(Settings.load(env={}, home=front.settings.home))  # the same index, the local engine
    local.__dict__.update(embedder=front.embedder, engine=session_services.engine)
    same = local.rag.answer(question, "bees", mode="generate")
    assert (answer.support["generated"], answer.text, answer.mode) == (same.support["generated"], same.text, same.mode)

    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps({"id": "capital", "question": QUESTION[0].content,
                                 "assertions": [{"type": "contains", "value": "Paris"}]}) + "\n")
    rc = main(["eval", "run", str(cases), "--home", str(front.settings.home), "--backend", "remote",
               "--remote-url", front.settings.remote_base_url, "--json", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert json.loads(out[out.index("{"):])["metrics"]["pass_rate"] == 1.0


def test_import_stays_light():
    code = ("import sys; import llmspace.engine.remote_engine, llmspace.config; "
            "print([m for m in ('httpx', 'torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"
