"""The OpenAI-compatible API, driven by the official `openai` SDK and raw HTTP."""

import math

import httpx
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(live_server):
    from openai import OpenAI

    return OpenAI(base_url=f"{live_server}/v1", api_key="not-needed", max_retries=0)


FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_completion_non_streaming(client):
    r = client.chat.completions.create(model="smollm2-135m-instruct", messages=FRANCE, max_tokens=30)
    assert r.choices[0].message.content == "The capital of France is Paris."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 37 and r.usage.completion_tokens == 7 and r.usage.total_tokens == 44


def test_chat_completion_streaming_arrives_in_pieces(client):
    stream = client.chat.completions.create(model="default", messages=FRANCE, max_tokens=30, stream=True,
                                            stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert len(pieces) >= 5
    assert "".join(pieces) == "The capital of France is Paris."
    assert finish == "stop" and usage.completion_tokens == 7


def test_models_lists_chat_and_embedding(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["smollm2-135m-instruct", "all-minilm-l6-v2"]


def test_embeddings_are_384_dim_unit_norm_and_semantic(client):
    r = client.embeddings.create(model="all-minilm-l6-v2",
                                 input=["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell."])
    vecs = [d.embedding for d in r.data]
    assert [len(v) for v in vecs] == [384, 384, 384]
    for v in vecs:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(vecs[0], vecs[1]) > dot(vecs[0], vecs[2]) + 0.3
    assert r.usage.prompt_tokens > 0
    b64 = client.embeddings.create(model="all-minilm-l6-v2", input="A cat sits on the mat.", encoding_format="base64")
    import base64
    import struct

    raw = base64.b64decode(b64.data[0].embedding)  # asked for explicitly, the SDK hands back the string
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(floats) == 384 and math.isclose(floats[0], vecs[0][0], abs_tol=1e-5)


def test_health_and_metrics(live_server, client):
    client.chat.completions.create(model="default", messages=FRANCE, max_tokens=5)
    h = httpx.get(f"{live_server}/health").json()
    assert h["status"] == "ok" and h["model"] == "smollm2-135m-instruct" and h["model_loaded"] is True
    text = httpx.get(f"{live_server}/metrics").text
    for name in ("llmspace:time_to_first_token_seconds_bucket", "llmspace:e2e_request_latency_seconds_count",
                 "llmspace:prompt_tokens_total", "llmspace:generation_tokens_total",
                 "llmspace:num_requests_running", "llmspace:num_requests_waiting",
                 "llmspace:inter_token_latency_seconds_count"):
        assert name in text, name
    gen = [line for line in text.splitlines() if line.startswith("llmspace:generation_tokens_total")]
    assert float(gen[0].split()[-1]) >= 5


USER = {"role": "user", "content": "hi"}
BAD = [
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "user", "content": ""}]}, 400, "messages[0].content"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role"),
    ({"messages": [USER], "max_tokens": 0}, 400, "max_tokens"),
    ({"messages": [USER], "max_tokens": 100000}, 400, "max_tokens"),
    ({"messages": [USER], "temperature": -1}, 400, "temperature"),
    ({"messages": [USER], "model": "gpt-9"}, 404, "model"),
    ({"messages": [{"role": "user", "content": "word " * 9000}]}, 400, "messages"),
    ({"messages": [USER], "max_tokens": "many"}, 400, "max_tokens"),
    ({}, 400, "messages"),
    ({"messages": [USER], "n": 2}, 400, "n"),
]


@pytest.mark.parametrize("body,status,param", BAD)
def test_bad_chat_requests_get_openai_style_errors(live_server, body, status, param):
    r = httpx.post(f"{live_server}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"]


def test_context_overflow_message_says_by_how_much(live_server):
    r = httpx.post(f"{live_server}/v1/chat/completions", timeout=60,
                   json={"messages": [{"role": "user", "content": "word " * 9000}]})
    assert "tokens too long" in r.json()["error"]["message"]


def test_malformed_json_is_400(live_server):
    r = httpx.post(f"{live_server}/v1/chat/completions", content=b'{"messages": [', timeout=30,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("body,status,param", [
    ({"input": []}, 400, "input"),
    ({"input": [""]}, 400, "input[0]"),
    ({"input": [[1, 2, 3]]}, 400, "input[0]"),
    ({"input": "x", "model": "text-embedding-3-small"}, 404, "model"),
])
def test_bad_embedding_requests(live_server, body, status, param):
    r = httpx.post(f"{live_server}/v1/embeddings", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_sdk_raises_typed_errors(client):
    import openai

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=FRANCE)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="default", messages=FRANCE, max_tokens=-1)


def test_chat_answers_are_recorded_for_feedback_by_id(live_server, client):
    r = client.chat.completions.create(model="default", messages=FRANCE, max_tokens=30)
    fb = httpx.post(f"{live_server}/v1/feedback", json={"rating": "up", "response_id": r.id, "comment": "right"},
                    timeout=30)
    assert fb.status_code == 200, fb.text
    exported = httpx.get(f"{live_server}/v1/feedback/export", timeout=30).text
    assert "What is the capital of France?" in exported and "Paris" in exported
