"""The engine thread (issue #10): continuous batching, a bounded queue, cancellation, timeouts,
keep-alives and a backend crash, on real models.

Most tests use the 2-layer random Llama of export_helpers.py (SmolLM2's tokenizer; its
logits are spread wide, so greedy choices are far from ties) on torch and its fp32 ONNX
export; one checks the real SmolLM2. Nothing here checks speed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from export_helpers import tiny_fp32_export, tiny_llama
from server_helpers import serve

from llmspace.config import Settings
from llmspace.engine.base import GenerationParams, Message, complete
from llmspace.errors import GenerationError, ServerBusyError

PROMPTS = ["Hello there", "What is a token? Answer in one short sentence please.", "Name three colours",
           "Retrieval augmented generation cites its sources, and a good answer says which one."]
GREEDY = GenerationParams(max_new_tokens=24)
SAMPLED = GenerationParams(max_new_tokens=24, temperature=1.0, top_p=0.9, seed=11)
LONG = GenerationParams(max_new_tokens=1500)  # runs for seconds on the tiny model unless stopped
WAIT_S = 60


@pytest.fixture(scope="module")
def tiny_src(tmp_path_factory, shared_models_dir):
    return tiny_llama(tmp_path_factory.getbasetemp(), shared_models_dir)


@pytest.fixture(scope="module")
def fp32_export(tmp_path_factory, shared_models_dir):
    return tiny_fp32_export(tmp_path_factory.getbasetemp(), shared_models_dir)


def _torch(tiny_src, **settings):
    from llmspace.engine.torch_engine import TorchEngine

    return TorchEngine(Settings.load(**settings), str(tiny_src)).load()


def _msgs(text: str) -> list[Message]:
    return [Message("user", text)]


def _read_all(stream) -> tuple[str, object]:
    parts, last = [], None
    for d in stream:
        parts.append(d.text)
        last = d
    return "".join(parts), last


def _first_text(stream):
    for d in stream:
        if d.text:
            return d
    raise AssertionError("the stream ended without text")


# ------------------------------------------------------------------ batching
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_requests_batched_together_give_the_tokens_they_give_alone(backend, tiny_src, fp32_export, llmspace_home):
    if backend == "torch":
        engine = _torch(tiny_src)
    else:
        from llmspace.engine.onnx_engine import OnnxEngine

        engine = OnnxEngine(Settings.load(), str(fp32_export), dtype="fp32").load()
    params = [GREEDY, GREEDY, SAMPLED, GREEDY]
    alone = [complete(engine, _msgs(p), g) for p, g in zip(PROMPTS, params)]
    steps_alone = engine.scheduler.stats.steps
    assert engine.scheduler.stats.max_batch == 1
    # all queued before any is read: they join one batch (prompts of different lengths: left padding)
    streams = [engine.stream(_msgs(p), g) for p, g in zip(PROMPTS, params)]
    with ThreadPoolExecutor(len(streams)) as pool:
        together = list(pool.map(_read_all, streams))
    assert [t for t, _ in together] == [a.text for a in alone]
    assert [last.usage.completion_tokens for _, last in together] == [a.usage.completion_tokens for a in alone]
    stats = engine.scheduler.stats
    assert stats.max_batch >= 3  # they really shared decode steps ...
    assert stats.steps - steps_alone < steps_alone  # ... so it took fewer steps than one after another


@pytest.mark.slow
def test_real_model_batched_equals_alone(session_services):
    engine = session_services.engine
    prompts = ["What is the capital of France?", "Write a haiku about the sea.", "List three colors."]
    params = GenerationParams(max_new_tokens=20)
    alone = [complete(engine, _msgs(p), params).text for p in prompts]
    before = engine.scheduler.stats.max_batch
    streams = [engine.stream(_msgs(p), params) for p in prompts]
    with ThreadPoolExecutor(len(streams)) as pool:
        together = [t for t, _ in pool.map(_read_all, streams)]
    assert together == alone
    assert engine.scheduler.stats.max_batch >= max(2, before)


# ------------------------------------------------------------------ slots and the queue
def test_a_closed_stream_frees_its_slot_at_once(tiny_src, llmspace_home):
    engine = _torch(tiny_src, max_num_seqs=1)
    first = engine.stream(_msgs(PROMPTS[0]), LONG)
    assert _first_text(first).text
    first.close()  # a client that went away
    done = complete(engine, _msgs(PROMPTS[1]), GenerationParams(max_new_tokens=4))
    assert done.usage.completion_tokens >= 1
    # the long request was dropped from the batch, not run to its 1500 tokens
    assert engine.scheduler.stats.tokens < 200
    assert engine.engine_stats()["running"] == 0


def test_a_reader_that_stops_reading_holds_no_model(tiny_src, llmspace_home):
    """The model is never held on behalf of a reader: a stream left unread (not closed) does not
    keep a second request from starting and finishing."""
    engine = _torch(tiny_src)
    first = engine.stream(_msgs(PROMPTS[0]), LONG)
    assert _first_text(first).text
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(complete, engine, _msgs(PROMPTS[1]), GenerationParams(max_new_tokens=4))
        assert second.result(timeout=WAIT_S).usage.completion_tokens >= 1
    first.close()


def test_a_full_queue_is_refused_with_retry_after(tiny_src, llmspace_home):
    engine = _torch(tiny_src, max_num_seqs=1, max_queue=1)
    running = engine.stream(_msgs(PROMPTS[0]), LONG)
    _first_text(running)
    queued = engine.stream(_msgs(PROMPTS[1]), GenerationParams(max_new_tokens=4))
    with pytest.raises(ServerBusyError) as info:
        engine.stream(_msgs(PROMPTS[2]), GenerationParams(max_new_tokens=4))
    assert info.value.status == 503 and info.value.retry_after >= 1
    assert "LLMSPACE_MAX_QUEUE" in info.value.message
    running.close()
    text, last = _read_all(queued)  # the queued one still runs once the slot is free
    assert last.finish_reason in ("stop", "length") and last.usage.completion_tokens >= 1
    assert engine.engine_stats()["rejected"] == 1


def test_a_queued_request_sends_keepalives_and_counts_its_queue_time(tiny_src, llmspace_home):
    engine = _torch(tiny_src, max_num_seqs=1, keepalive_s=0.05)
    running = engine.stream(_msgs(PROMPTS[0]), LONG)
    _first_text(running)
    queued = engine.stream(_msgs(PROMPTS[1]), GenerationParams(max_new_tokens=4))
    first = next(queued)
    assert first.waiting and first.text == "" and first.finish_reason is None
    time.sleep(0.3)
    running.close()
    deltas = [first, *queued]
    last = deltas[-1]
    assert any(d.text for d in deltas) and last.finish_reason is not None
    assert last.timings["queue_s"] >= 0.3
    assert last.timings["ttft_s"] >= last.timings["queue_s"]  # time to first token includes the wait


def test_a_request_that_waits_too_long_is_refused(tiny_src, llmspace_home):
    engine = _torch(tiny_src, max_num_seqs=1, queue_timeout_s=0.2, keepalive_s=0.05)
    running = engine.stream(_msgs(PROMPTS[0]), LONG)
    _first_text(running)
    queued = engine.stream(_msgs(PROMPTS[1]), GenerationParams(max_new_tokens=4))
    time.sleep(0.4)
    running.close()
    with pytest.raises(ServerBusyError, match="LLMSPACE_QUEUE_TIMEOUT_S"):
        list(queued)


def test_a_generation_past_its_timeout_ends_with_finish_reason_timeout(tiny_src, llmspace_home):
    engine = _torch(tiny_src, request_timeout_s=0.3)
    done = complete(engine, _msgs(PROMPTS[0]), LONG)
    assert done.finish_reason == "timeout"
    assert 1 <= done.usage.completion_tokens < LONG.max_new_tokens


def test_a_backend_crash_fails_that_request_and_the_engine_keeps_serving(tiny_src, llmspace_home):
    engine = _torch(tiny_src)
    ops = engine.scheduler.ops
    real, calls = ops.decode, []

    def crashes_once(*args):  # fault injection around the real decode step
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated kernel failure")
        return real(*args)

    ops.decode = crashes_once
    with pytest.raises(GenerationError, match="simulated kernel failure"):
        complete(engine, _msgs(PROMPTS[0]), GREEDY)
    ops.decode = real
    assert complete(engine, _msgs(PROMPTS[0]), GREEDY).usage.completion_tokens >= 1
    assert engine.engine_stats()["errors"] == 1


# ------------------------------------------------------------------ through the HTTP API
@pytest.fixture
def busy_server(tiny_src, llmspace_home):
    from llmspace.serve.app import create_app
    from llmspace.services import Services

    settings = Settings.load(chat_model=str(tiny_src), max_num_seqs=1, max_queue=1, keepalive_s=0.1,
                             web_export=False, index_bundled_corpus=False)
    services = Services(settings)
    with serve(create_app(services, with_ui=False)) as url:
        yield url, services


def test_api_answers_503_with_retry_after_and_streams_keepalives(busy_server):
    import httpx
    import openai

    url, services = busy_server
    body = {"messages": [{"role": "user", "content": PROMPTS[0]}], "stream": True, "max_tokens": LONG.max_new_tokens}
    lines: list[str] = []
    with httpx.Client(timeout=WAIT_S) as http, http.stream("POST", f"{url}/v1/chat/completions", json=body) as running:
        assert running.status_code == 200
        reading = running.iter_lines()  # kept: a dropped iterator closes the connection (a disconnect)
        for line in reading:
            if '"content"' in line and '"content": ""' not in line:
                break  # generating now

        def queued_stream():
            small = {**body, "max_tokens": 4}
            with httpx.Client(timeout=WAIT_S) as c, c.stream("POST", f"{url}/v1/chat/completions", json=small) as r:
                assert r.status_code == 200
                lines.extend(r.iter_lines())

        t = threading.Thread(target=queued_stream)
        t.start()
        deadline = time.monotonic() + WAIT_S
        while services.engine.engine_stats()["waiting"] < 1:
            assert time.monotonic() < deadline, (services.engine.engine_stats(), lines, t.is_alive())
            time.sleep(0.02)
        r = http.post(f"{url}/v1/chat/completions", json={**body, "stream": False, "max_tokens": 4})
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["code"] == "server_busy"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model=services.engine.model_id, messages=body["messages"], max_tokens=4)
        assert info.value.status_code == 503
        time.sleep(0.3)  # the queued stream waits a few keep-alive periods
    # the running stream's client left (the with-block closed it): its slot frees, the queued one runs
    t.join(timeout=WAIT_S)
    assert not t.is_alive()
    assert ": waiting for the model" in lines
    assert "data: [DONE]" in lines and any('"content"' in line for line in lines)
    assert 'llmspace:requests_rejected{model=' in httpx.get(f"{url}/metrics").text


def test_a_hundred_requests_at_once_get_answers_or_503s(tiny_src, llmspace_home):
    import httpx

    from llmspace.serve.app import create_app
    from llmspace.services import Services

    settings = Settings.load(chat_model=str(tiny_src), max_num_seqs=4, max_queue=8, web_export=False,
                             index_bundled_corpus=False)
    body = {"messages": [{"role": "user", "content": PROMPTS[1]}], "max_tokens": 8}

    async def burst(url):
        async with httpx.AsyncClient(timeout=WAIT_S) as c:
            return await asyncio.gather(*(c.post(f"{url}/v1/chat/completions", json=body) for _ in range(100)))

    with serve(create_app(Services(settings), with_ui=False)) as url:
        answers = asyncio.run(burst(url))
        codes = [r.status_code for r in answers]
        assert set(codes) <= {200, 503}, codes
        assert codes.count(200) >= 4
        assert all(int(r.headers["Retry-After"]) >= 1 for r in answers if r.status_code == 503)
        texts = {r.json()["choices"][0]["message"]["content"] for r in answers if r.status_code == 200}
        assert len(texts) == 1  # greedy: the same answer whichever batch it ran in
        after = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=WAIT_S)
        assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"] in texts


def test_a_dropped_engine_ends_its_thread_and_frees_the_model(tiny_src, llmspace_home):
    import gc
    import weakref

    engine = _torch(tiny_src)
    complete(engine, _msgs(PROMPTS[0]), GenerationParams(max_new_tokens=2))
    thread, model = engine.scheduler._thread, weakref.ref(engine._model)
    assert thread.is_alive()
    del engine
    gc.collect()
    thread.join(timeout=WAIT_S)
    gc.collect()
    assert not thread.is_alive() and model() is None


def test_shutdown_ends_running_and_queued_requests_with_a_clear_error(tiny_src, llmspace_home):
    engine = _torch(tiny_src, max_num_seqs=1)
    running = engine.stream(_msgs(PROMPTS[0]), LONG)
    _first_text(running)
    queued = engine.stream(_msgs(PROMPTS[1]), GREEDY)
    engine.scheduler.shutdown()
    for stream in (running, queued):
        with pytest.raises(ServerBusyError, match="shutting down"):
            list(stream)


def test_on_cuda_the_engine_runs_in_half_precision_and_batches(tiny_src, llmspace_home):
    """The GPU path (docs/serving.md): runs only where a CUDA GPU is visible."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    engine = _torch(tiny_src, device="cuda")
    assert engine.weight_format in ("bf16", "fp16") and engine._model.device.type == "cuda"
    streams = [engine.stream(_msgs(p), GREEDY) for p in PROMPTS]
    with ThreadPoolExecutor(len(streams)) as pool:
        outs = list(pool.map(_read_all, streams))
    assert all(last.usage.completion_tokens >= 1 for _, last in outs)
    assert engine.scheduler.stats.max_batch >= 2


def test_a_reader_behind_the_engine_gets_the_same_text_in_fewer_deltas(tiny_src, llmspace_home):
    engine = _torch(tiny_src)
    alone = complete(engine, _msgs(PROMPTS[1]), GREEDY)
    before = engine.scheduler.stats.tokens
    late = engine.stream(_msgs(PROMPTS[1]), GREEDY)
    deadline = time.monotonic() + WAIT_S
    while (engine.scheduler.stats.tokens - before < alone.usage.completion_tokens
           or engine.engine_stats()["running"]):  # all computed, none read
        assert time.monotonic() < deadline
        time.sleep(0.02)
    deltas = list(late)
    assert "".join(d.text for d in deltas) == alone.text
    assert deltas[-1].usage.completion_tokens == alone.usage.completion_tokens
    assert len([d for d in deltas if d.text]) < alone.usage.completion_tokens  # decoded together, not one by one
