"""The local engines under a server's threading: a stream read from several pool
threads while the model runs on its engine thread only, prefill memory, and one sampler
for both backends. (Queueing, batching and cancellation: test_engine_scheduler.py.)

Real models: the 2-layer random Llama of export_helpers.py (SmolLM2's tokenizer) on
torch, and its fp32 ONNX export on onnxruntime.
"""

from __future__ import annotations

import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest
from export_helpers import tiny_fp32_export, tiny_llama

from llmspace.engine.base import GenerationParams, Message, complete

PROMPT = [Message("user", "Hello there")]
LONG = [Message("user", "Retrieval augmented generation cites its sources. " * 40)]
SAMPLED = GenerationParams(max_new_tokens=16, temperature=1.0, top_p=0.9, top_k=50, seed=7)
WAIT_S = 60  # far more than a tiny-model stream needs, even on a busy CPU


@pytest.fixture(scope="module")
def tiny_src(tmp_path_factory, shared_models_dir):
    return tiny_llama(tmp_path_factory.getbasetemp(), shared_models_dir)


@pytest.fixture(scope="module")
def fp32_export(tmp_path_factory, shared_models_dir):
    return tiny_fp32_export(tmp_path_factory.getbasetemp(), shared_models_dir)


@pytest.fixture
def torch_engine(settings, tiny_src):
    from llmspace.engine.torch_engine import TorchEngine

    return TorchEngine(settings, str(tiny_src)).load()


def _record_forwards(model) -> tuple[list[dict], object]:
    """What each forward call of ``model`` saw and made (a hook observes; nothing is replaced)."""
    import torch

    seen: list[dict] = []

    def hook(module, args, kwargs, out):
        cache = out.past_key_values
        seen.append({
            "thread": threading.get_ident(),
            "grad_enabled": torch.is_grad_enabled(),
            "input_len": kwargs["input_ids"].shape[1],
            "logits_shape": tuple(out.logits.shape),
            "logits_grad": out.logits.requires_grad,
            "cache_grad": any(t.requires_grad for layer in cache.layers for t in (layer.keys, layer.values)),
        })

    return seen, model.register_forward_hook(hook, with_kwargs=True)


# ------------------------------------------------------------------ one thread owns the model
def test_the_model_runs_on_its_engine_thread_only_and_builds_no_graph(torch_engine):
    import torch

    alone = complete(torch_engine, PROMPT, SAMPLED)
    seen, handle = _record_forwards(torch_engine._model)
    pools = [ThreadPoolExecutor(1), ThreadPoolExecutor(1)]  # two threads, reading in turn like a server's pool
    readers = set()
    try:
        stream = torch_engine.stream(PROMPT, SAMPLED)

        def step():
            readers.add(threading.get_ident())
            delta = next(stream, None)
            return delta, torch.is_grad_enabled()  # this thread's grad mode, once the step is done

        deltas, modes = [], []
        for i in range(SAMPLED.max_new_tokens + 2):
            delta, mode = pools[i % 2].submit(step).result(timeout=WAIT_S)
            modes.append(mode)
            if delta is None:
                break
            deltas.append(delta)
    finally:
        handle.remove()
        for pool in pools:
            pool.shutdown()
    engine_threads = {t.ident for t in threading.enumerate() if t.name.startswith("llmspace-engine")}
    assert len(readers) == 2
    assert {s["thread"] for s in seen} <= engine_threads and not readers & {s["thread"] for s in seen}
    assert not any(p.requires_grad for p in torch_engine._model.parameters())
    assert not any(s["grad_enabled"] or s["logits_grad"] or s["cache_grad"] for s in seen), seen
    assert all(modes)
    assert "".join(d.text for d in deltas) == alone.text
    assert deltas[-1].usage.completion_tokens == alone.usage.completion_tokens


# ------------------------------------------------------------------ prefill memory
def test_torch_prefill_computes_the_last_position_only(torch_engine):
    seen, handle = _record_forwards(torch_engine._model)
    try:
        done = complete(torch_engine, LONG, GenerationParams(max_new_tokens=3))
    finally:
        handle.remove()
    assert seen[0]["input_len"] == done.usage.prompt_tokens > 300
    assert [s["logits_shape"][1] for s in seen] == [1, 1, 1]


def test_onnx_prefill_never_copies_every_position(fp32_export, settings):
    import numpy as np

    from llmspace.engine.onnx_engine import OnnxEngine

    engine = OnnxEngine(settings, str(fp32_export), dtype="fp32").load()
    n = engine.count_prompt_tokens(LONG)
    vocab = engine._model.session.get_outputs()[0].shape[-1]
    vocab = vocab if isinstance(vocab, int) else len(engine.tokenizer)
    all_positions = n * vocab * np.dtype(np.float32).itemsize  # one (prompt, vocab) float32 array
    tracemalloc.start()
    try:
        done = complete(engine, LONG, GenerationParams(max_new_tokens=2))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.usage.prompt_tokens == n > 300 and all_positions > 50e6
    # onnxruntime's own output array is not traced; numpy's float32 copy of it would be (1x). One
    # row is 200 kB; the rest of the peak is tokenizer and cache plumbing.
    assert peak < all_positions / 10, (peak, all_positions)


# ------------------------------------------------------------------ one sampler
def test_same_seed_gives_the_same_tokens_on_both_backends(torch_engine, fp32_export, settings):
    from llmspace.engine.onnx_engine import OnnxEngine

    onnx = OnnxEngine(settings, str(fp32_export), dtype="fp32")
    a, b = complete(torch_engine, PROMPT, SAMPLED), complete(onnx, PROMPT, SAMPLED)
    assert a.text == b.text and a.usage.completion_tokens == b.usage.completion_tokens
    other = complete(onnx, PROMPT, GenerationParams(**{**SAMPLED.__dict__, "seed": 8}))
    greedy = complete(onnx, PROMPT, GenerationParams(max_new_tokens=SAMPLED.max_new_tokens))
    assert a.text != greedy.text and a.text != other.text  # really sampled, and by that seed
