"""gRPC beside the HTTP API (llmspace.v1.LLMSpace): a real grpcio client against the server on a
loopback port, over the real models. The answers must be the library's (and so the HTTP API's),
bad input must say what is wrong, and a call the client drops must free the model at once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from llmspace.engine.base import GenerationParams
from llmspace.errors import (
    ContextLengthError,
    LLMSpaceError,
    ModelNotFoundError,
    ServerBusyError,
    UpstreamError,
    ValidationError,
)
from llmspace.serve.grpc import llmspace_pb2 as pb
from llmspace.serve.grpc import llmspace_pb2_grpc as pb_grpc
from llmspace.serve.grpc_server import start_grpc_server, status_code_for, stop_grpc_server

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = "llmspace/serve/grpc"
GENERATED = ("llmspace_pb2.py", "llmspace_pb2.pyi", "llmspace_pb2_grpc.py")

HI = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
LONG = [{"role": "user", "content": "Count from 1 to 200, one number per line."}]


def _msgs(messages) -> list[pb.Message]:
    return [pb.Message(role=m["role"], content=m["content"]) for m in messages]


# ---- no model ---------------------------------------------------------------------------------------
def test_committed_stubs_are_what_the_proto_generates(tmp_path):
    """The _pb2 files are committed (an install needs no protoc); they must never drift from the .proto."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools is in the dev extra")
    out = tmp_path / "gen"
    out.mkdir()
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={out}", f"--pyi_out={out}",
           f"--grpc_python_out={out}", f"{PROTO_DIR}/llmspace.proto"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    for name in GENERATED:
        fresh = (out / PROTO_DIR / name).read_text()
        committed = (ROOT / PROTO_DIR / name).read_text()
        assert fresh == committed, (f"{PROTO_DIR}/{name} differs from what the .proto generates; regenerate with: "
                                    f"{' '.join(cmd[1:4])} --python_out=. --pyi_out=. --grpc_python_out=. "
                                    f"{PROTO_DIR}/llmspace.proto")


def test_errors_map_to_grpc_status_codes():
    assert status_code_for(ValidationError("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code_for(ContextLengthError("x")) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code_for(ModelNotFoundError("x")) == grpc.StatusCode.NOT_FOUND
    assert status_code_for(ServerBusyError("x", retry_after=3)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_code_for(UpstreamError("x")) == grpc.StatusCode.UNAVAILABLE
    assert status_code_for(LLMSpaceError("x")) == grpc.StatusCode.INVALID_ARGUMENT  # status 400
    assert status_code_for(RuntimeError("x")) == grpc.StatusCode.INTERNAL


def test_a_port_in_use_is_a_clear_error(settings):
    import socket

    from llmspace.errors import ConfigError
    from llmspace.services import Services

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="port is in use"):
            start_grpc_server(Services(settings), port, "127.0.0.1")


def test_the_proto_ships_in_the_package():
    import tomllib
    from importlib.resources import files

    assert (files("llmspace") / "serve/grpc/llmspace.proto").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["llmspace"]
    assert "serve/grpc/*.proto" in data


# ---- real models ------------------------------------------------------------------------------------
def _serve(services):
    from conftest import _free_port

    port = _free_port()
    server = start_grpc_server(services, port, "127.0.0.1", max_workers=8)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    return server, channel, port


@pytest.fixture(scope="module")
def grpc_server(session_services):
    session_services.warm_up()  # as `llmspace serve` does before it listens: deadlines then time generation only
    server, channel, port = _serve(session_services)
    yield channel, port
    channel.close()
    stop_grpc_server(server, grace=1)


@pytest.fixture
def grpc_channel(grpc_server):
    return grpc_server[0]


@pytest.fixture
def grpc_port(grpc_server):
    return grpc_server[1]


@pytest.fixture
def grpc_stub(grpc_channel):
    return pb_grpc.LLMSpaceStub(grpc_channel)


def _rpc_error(fn, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        out = fn(*args, **kwargs)
        if not isinstance(out, pb.GenerateResponse) and hasattr(out, "__iter__"):
            list(out)  # a stream reports its error when read
    return info.value


def _row(services, response_id: str, wait_s: float = 30) -> dict | None:
    from llmspace.evals.feedback import get_response

    deadline = time.monotonic() + wait_s
    while (row := get_response(services.settings.db_path, response_id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return row


@pytest.mark.slow
def test_health_says_what_is_served(grpc_stub, grpc_channel, session_services):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    h = grpc_stub.Health(pb.HealthRequest(), timeout=30)
    assert h.status == "ok" and h.model == session_services.engine.model_id
    assert h.backend == session_services.engine.backend and h.embedding_model == session_services.embedder.name
    health = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", "llmspace.v1.LLMSpace"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == \
            health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow
def test_generate_gives_the_library_and_http_answer(grpc_stub, session_services):
    from fastapi.testclient import TestClient

    from llmspace.chat import chat
    from llmspace.serve.app import create_app

    r = grpc_stub.Generate(pb.GenerateRequest(messages=_msgs(HI), max_tokens=24), timeout=120)
    lib = chat(session_services, HI, GenerationParams(max_new_tokens=24), online=False)
    assert r.text and r.text == lib.text
    assert r.finish_reason == lib.finish_reason and r.usage.completion_tokens == lib.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model == session_services.engine.model_id and r.id.startswith("chatcmpl-")
    assert {"ttft_s", "total_s"} <= set(r.timings)
    with TestClient(create_app(session_services, with_ui=False)) as http:
        body = http.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 24}).json()
    assert body["choices"][0]["message"]["content"] == r.text
    # recorded like an HTTP answer (feedback by id works), and counted in /metrics
    row = _row(session_services, r.id)
    assert row is not None and row["answer"] == r.text and row["finish_reason"] == r.finish_reason
    done = session_services.metrics.registry.get_sample_value(
        "llmspace:request_success_total", {"model": r.model, "finished_reason": r.finish_reason})
    assert done and done >= 1


@pytest.mark.slow
def test_the_stream_adds_up_to_the_unary_answer(grpc_stub):
    req = pb.GenerateRequest(messages=_msgs(HI), max_tokens=24)
    chunks = list(grpc_stub.GenerateStream(req, timeout=120))
    whole = grpc_stub.Generate(req, timeout=120)
    assert len(chunks) > 2 and all(c.id == chunks[0].id and c.model == whole.model for c in chunks)
    assert all(not c.finish_reason for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == whole.finish_reason and last.usage.completion_tokens == whole.usage.completion_tokens
    assert {"ttft_s", "total_s"} <= set(last.timings)
    assert "".join(c.text for c in chunks) == whole.text
    # sampling fields reach the engine: a stop string ends the answer early
    stop = whole.text.split()[1]
    cut = grpc_stub.Generate(pb.GenerateRequest(messages=_msgs(HI), max_tokens=24, stop=[stop]), timeout=120)
    assert cut.finish_reason == "stop" and stop not in cut.text and len(cut.text) < len(whole.text)


@pytest.mark.slow
def test_embed_gives_the_library_vectors(grpc_stub, session_services):
    import numpy as np

    texts = ["Bees keep warm in winter by clustering.", "Green tea is steamed or pan-fired."]
    r = grpc_stub.Embed(pb.EmbedRequest(texts=texts), timeout=60)
    want = session_services.embedder.embed(texts)
    got = np.array([e.values for e in r.embeddings], dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    assert r.model == session_services.embedder.name
    assert r.usage.prompt_tokens == sum(session_services.embedder.count_tokens(t) for t in texts) > 0
    # the registry name works as the model, like /v1/embeddings
    assert grpc_stub.Embed(pb.EmbedRequest(texts=texts[:1], model="all-minilm-l6-v2"), timeout=60).embeddings


@pytest.mark.slow
def test_bad_input_is_invalid_argument_with_a_clear_message(grpc_stub, session_services):
    limit = session_services.settings.max_tokens_limit
    e = _rpc_error(grpc_stub.Generate, pb.GenerateRequest(), timeout=30)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "`messages` must be a non-empty list" in e.details()
    e = _rpc_error(grpc_stub.Generate, pb.GenerateRequest(messages=_msgs(HI), max_tokens=limit + 1), timeout=30)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"max_tokens is {limit + 1}; the limit is {limit}."
    e = _rpc_error(grpc_stub.GenerateStream, pb.GenerateRequest(messages=[pb.Message(role="user", content=" ")]),
                   timeout=30)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "messages[0].content is empty."
    e = _rpc_error(grpc_stub.Generate, pb.GenerateRequest(messages=_msgs(HI), temperature=5), timeout=30)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "temperature must be between 0 and 2" in e.details()
    e = _rpc_error(grpc_stub.Generate, pb.GenerateRequest(messages=_msgs(HI), model="gpt-4"), timeout=30)
    assert e.code() == grpc.StatusCode.NOT_FOUND and "'gpt-4' is not served here" in e.details()
    huge = [{"role": "user", "content": "word " * 9000}]  # over the 8k context window, under max_request_chars
    e = _rpc_error(grpc_stub.Generate, pb.GenerateRequest(messages=_msgs(huge), max_tokens=8), timeout=60)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "context" in e.details()
    e = _rpc_error(grpc_stub.Embed, pb.EmbedRequest(), timeout=30)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "`texts` is empty."
    e = _rpc_error(grpc_stub.Embed, pb.EmbedRequest(texts=["fine", ""]), timeout=30)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and e.details() == "texts[1] is empty."
    errors = session_services.metrics.registry.get_sample_value(
        "llmspace:request_errors_total", {"route": "/llmspace.v1.LLMSpace/Generate", "status": "400"})
    assert errors and errors >= 4


@pytest.mark.slow
def test_a_cancelled_stream_frees_the_model_and_is_recorded_as_cancelled(grpc_stub, session_services):
    call = grpc_stub.GenerateStream(pb.GenerateRequest(messages=_msgs(LONG), max_tokens=200), timeout=120)
    got = [next(call) for _ in range(3)]
    t0 = time.monotonic()
    call.cancel()
    row = _row(session_services, got[0].id)
    assert row is not None, "the cancelled stream was not recorded"
    assert row["finish_reason"] == "cancelled" and row["answer"].startswith("".join(c.text for c in got))
    assert time.monotonic() - t0 < 10  # ended at once, not after 200 tokens
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    # the model is free: the next call is answered
    assert grpc_stub.Generate(pb.GenerateRequest(messages=_msgs(HI), max_tokens=2), timeout=60).finish_reason


@pytest.mark.slow
def test_a_unary_call_past_its_deadline_stops_generating(grpc_stub, session_services):
    from llmspace.db import connect
    from llmspace.evals.feedback import migrations

    def cancelled_ids() -> set[str]:
        with connect(session_services.settings.db_path, migrations) as db:
            return {r["id"] for r in db.execute("SELECT id FROM responses WHERE finish_reason = 'cancelled' "
                                                "AND question LIKE 'Count from 1 to 200%'")}

    before = cancelled_ids()
    e = _rpc_error(grpc_stub.Generate, pb.GenerateRequest(messages=_msgs(LONG), max_tokens=400), timeout=1.0)
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    t0 = time.monotonic()
    while not (cancelled_ids() - before) and time.monotonic() < t0 + 30:
        time.sleep(0.05)
    # 400 tokens take far longer than this on a CPU: recorded as cancelled means it stopped at the deadline
    assert cancelled_ids() - before, "the generation went on after the deadline (no cancelled answer recorded)"
    assert time.monotonic() - t0 < 10


@pytest.mark.slow
def test_ab_arms_and_the_user_apply_over_grpc(session_services, tmp_path):
    from llmspace.config import Settings
    from llmspace.evals.feedback import hash_user
    from llmspace.services import Services

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    ab = {"split": 0.5, "a": {"name": "control"}, "b": {"name": "terse", "system_prompt": "Be terse."}}
    services = Services(Settings.load(env={}, home=home, ab=json.dumps(ab)))
    services.__dict__["engine"] = session_services.engine  # one model in memory
    services.__dict__["embedder"] = session_services.embedder
    server, channel, _ = _serve(services)
    try:
        stub = pb_grpc.LLMSpaceStub(channel)
        req = pb.GenerateRequest(messages=_msgs(HI), max_tokens=2, user="alice")
        first = stub.Generate(req, timeout=60)
        assert first.variant in ("control", "terse")
        assert stub.Generate(req, timeout=60).variant == first.variant  # the same user keeps the same arm
        row = _row(services, first.id)
        assert row["variant"] == first.variant and row["user_hash"] == hash_user("user:alice")
        # without `user`, the bearer key (metadata) is who asks, as over HTTP
        keyed = stub.Generate(pb.GenerateRequest(messages=_msgs(HI), max_tokens=2), timeout=60,
                              metadata=(("authorization", "Bearer k1"),))
        assert _row(services, keyed.id)["user_hash"] == hash_user("key:k1")
    finally:
        channel.close()
        stop_grpc_server(server, grace=1)


def _doc_block(lang: str, containing: str) -> str:
    doc = (ROOT / "docs/grpc.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(rf"```{lang}\n(.*?)```", doc, re.S) if containing in b]
    return block


def _docs_stubs(tmp_path) -> Path:
    """docs/grpc.md's commands, run as written, make stubs in a client's own folder."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools is in the dev extra")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-euc", _doc_block("bash", "PROTO_DIR=")], cwd=tmp_path, env=env, check=True,
                   capture_output=True, text=True)
    return tmp_path / "client"


def test_the_docs_protoc_command_makes_importable_stubs(tmp_path):
    client = _docs_stubs(tmp_path)
    check = "import llmspace_pb2, llmspace_pb2_grpc; print(llmspace_pb2_grpc.LLMSpaceStub.__name__)"
    out = subprocess.run([sys.executable, "-c", check], cwd=client, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "LLMSpaceStub"


@pytest.mark.slow
def test_the_docs_example_client_runs(grpc_port, tmp_path):
    client = _docs_stubs(tmp_path)
    (client / "example.py").write_text(_doc_block("python", "LLMSpaceStub(channel)"))
    out = subprocess.run([sys.executable, "client/example.py", f"127.0.0.1:{grpc_port}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "status: \"ok\"" in out.stdout and "ttft" in out.stdout and "2 vectors of 384" in out.stdout
    assert "INVALID_ARGUMENT max_tokens is 1000000; the limit is 2048." in out.stdout


@pytest.mark.slow
def test_a_full_queue_is_resource_exhausted_with_retry_after_and_a_queued_call_can_leave(session_services, tmp_path):
    """One decoding slot and one queue place (the engine thread's real bound): a third call is refused
    with retry-after; a queued call that is cancelled leaves the queue at the next keep-alive."""
    import threading

    from llmspace.config import Settings
    from llmspace.services import Services

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    services = Services(Settings.load(env={}, home=home, max_num_seqs=1, max_queue=1, keepalive_s=0.1))
    services.__dict__["embedder"] = session_services.embedder
    services.warm_up()
    server, channel, _ = _serve(services)
    stats = services.engine.engine_stats

    def wait_for(cond, what):
        deadline = time.monotonic() + 60
        while not cond():
            assert time.monotonic() < deadline, (what, stats())
            time.sleep(0.02)

    try:
        stub = pb_grpc.LLMSpaceStub(channel)
        running = stub.GenerateStream(pb.GenerateRequest(messages=_msgs(LONG), max_tokens=400), timeout=120)
        next(running)  # generating now: the one slot is taken
        queued = stub.GenerateStream(pb.GenerateRequest(messages=_msgs(HI), max_tokens=4), timeout=120)
        got: list = []
        reader = threading.Thread(target=lambda: got.extend(_drain(queued)))
        reader.start()
        wait_for(lambda: stats()["waiting"] >= 1, "the second call did not queue")
        e = _rpc_error(stub.Generate, pb.GenerateRequest(messages=_msgs(HI), max_tokens=4), timeout=30)
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "busy" in e.details()
        assert int(dict(e.trailing_metadata())["retry-after"]) >= 1
        queued.cancel()  # leaves the queue without waiting for the running answer
        wait_for(lambda: stats()["waiting"] == 0, "the cancelled call stayed in the queue")
        reader.join(timeout=10)
        assert got == [grpc.StatusCode.CANCELLED]
        running.cancel()
        wait_for(lambda: stats()["running"] == 0, "the cancelled stream kept its slot")
        assert stub.Generate(pb.GenerateRequest(messages=_msgs(HI), max_tokens=2), timeout=60).finish_reason
    finally:
        channel.close()
        stop_grpc_server(server, grace=1)


def _drain(call) -> list:
    try:
        return [c.text for c in call]
    except grpc.RpcError as e:
        return [e.code()]


# ---- the CLI ----------------------------------------------------------------------------------------
def _cli(*args, env_extra=None, **kwargs):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "llmspace", *args], capture_output=True, text=True, env=env,
                          **kwargs)


def test_grpc_port_is_checked_and_shown(llmspace_home):
    r = _cli("serve", "--grpc-port", "70000")
    assert r.returncode != 0 and "--grpc-port must be 1-65535; got 70000." in r.stderr
    r = _cli("info", "--no-load", env_extra={"LLMSPACE_GRPC_PORT": "50051"})
    assert "gRPC 127.0.0.1:50051" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_serve_starts_grpc_beside_http_and_stops_both(llmspace_home):
    """`llmspace serve --grpc-port`: gRPC answers while HTTP does, and Ctrl-C ends both."""
    import signal

    import httpx
    from conftest import _free_port

    http_port, grpc_port = _free_port(), _free_port()
    env = {**os.environ, "LLMSPACE_WEB_EXPORT": "0", "LLMSPACE_INDEX_BUNDLED_CORPUS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "llmspace", "serve", "--no-ui", "--port", str(http_port),
                             "--grpc-port", str(grpc_port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            h = pb_grpc.LLMSpaceStub(channel).Health(pb.HealthRequest(), timeout=10)
            assert h.status == "ok" and h.model_loaded
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert f"gRPC llmspace.v1.LLMSpace on 127.0.0.1:{grpc_port}" in err
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            with pytest.raises(grpc.FutureTimeoutError):
                grpc.channel_ready_future(channel).result(timeout=2)  # nobody listens any more
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
