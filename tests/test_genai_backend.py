"""The onnxruntime-genai backend: GGUF blocks recovered exactly, and greedy output kept (issue #10, "Quality kept").

The fast tests check the block recovery on synthetic data. The slow ones build the genai model from the packaged
SmolLM2 (onnxruntime-genai's builder + llmspace's faithful rewrite, about 20-60 s, no network) and compare with
PyTorch fp32 on the same converted folder. They skip, saying why, when onnxruntime-genai is not installed;
``LLMSPACE_TEST_GENAI_MODEL`` may name an already built model folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from llmspace.export.genai import _pack_u4, recover_q4_1, recover_q8_0

HAS_GENAI = importlib.util.find_spec("onnxruntime_genai") is not None


def _q4_1_blocks(rng, n=8, k=64):
    """Weights as gguf-py dequantizes Q4_1: float32(d16 * q + m16)."""
    q = rng.integers(0, 16, size=(n, k // 32, 32)).astype(np.float32)
    q[..., 0], q[..., 1] = 0, 15  # a Q4_1 block always spans its range
    d = (rng.random((n, k // 32)) * 0.02 + 1e-3).astype(np.float16).astype(np.float32)
    m = (-rng.random((n, k // 32)) * 0.1).astype(np.float16).astype(np.float32)
    return (d[..., None] * q + m[..., None]).reshape(n, k), q, d, m


def test_q4_1_blocks_are_recovered_bit_for_bit():
    w, q, d, m = _q4_1_blocks(np.random.default_rng(0))
    got = recover_q4_1(w)
    assert got is not None
    gq, gd, gm = got
    assert np.array_equal(gq, q.astype(np.uint8)) and np.array_equal(gd, d) and np.array_equal(gm, m)


def test_q8_0_blocks_are_recovered_bit_for_bit():
    rng = np.random.default_rng(1)
    q = rng.integers(-127, 128, size=(4, 2, 32)).astype(np.float32)
    q[..., 0] = 127
    d = (rng.random((4, 2)) * 0.01 + 1e-4).astype(np.float16).astype(np.float32)
    got = recover_q8_0((d[..., None] * q).reshape(4, 64))
    assert got is not None and np.array_equal(got[0], q.astype(np.int8)) and np.array_equal(got[1], d)


def test_weights_that_are_not_gguf_blocks_are_left_alone():
    w = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    assert recover_q4_1(w) is None and recover_q8_0(w) is None
    assert recover_q4_1(np.zeros((2, 40), np.float32)) is None  # not a multiple of 32


def test_nibbles_are_packed_low_first():
    q = np.array([[1, 2, 15, 0]], dtype=np.uint8)
    assert _pack_u4(q).tolist() == [[0x21, 0x0F]]


# ---------------------------------------------------------------- the real model
PROMPTS_EXACT = [  # greedy output equal to PyTorch fp32's (measured; the first token of a bare "What is the capital
    # of France?" is a near-tie, 25.33 vs 25.24, which int8 activations flip, as llama.cpp's would)
    [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
    [{"role": "user", "content": "Translate to French: The cat sleeps on the warm windowsill."}],
]
PROMPTS_FORCED = [
    [{"role": "user", "content": "Write a short story about a lighthouse keeper who finds a message in a bottle "
                                 "on a stormy night, and what she decides to do next."}],
    [{"role": "user", "content": "Explain what a hash table is to a beginner programmer."}],
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Why is the sky blue?"}],
]


@pytest.fixture(scope="module")
def genai(shared_models_dir, tmp_path_factory):
    if not HAS_GENAI:
        pytest.skip("onnxruntime-genai is not installed (pip install onnxruntime-genai)")
    from llmspace.config import Settings
    from llmspace.engine.genai_engine import GenaiEngine
    from llmspace.export.genai import build_genai_model

    home = tmp_path_factory.mktemp("genai_home")
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    settings = Settings.load(env={}, home=home).model_copy(update={"threads": 2})
    preset = os.environ.get("LLMSPACE_TEST_GENAI_MODEL")
    if preset:
        if not (Path(preset) / "genai_config.json").exists():
            pytest.skip(f"LLMSPACE_TEST_GENAI_MODEL={preset} has no genai_config.json")
        folder = Path(preset)
    else:
        folder = build_genai_model(settings)
    return GenaiEngine(settings, folder=folder).load()


@pytest.fixture(scope="module")
def torch_model(genai):
    import torch
    from transformers import AutoModelForCausalLM

    from llmspace import models

    src = models.resolve(genai.settings.chat_model, "chat", genai.settings.models_dir)
    return AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()


def _torch_greedy(model, ids, n, eos):
    import torch

    out = []
    with torch.inference_mode():
        x, past = torch.tensor([ids]), None
        for _ in range(n):
            o = model(input_ids=x, past_key_values=past, use_cache=True)
            past, t = o.past_key_values, int(o.logits[0, -1].argmax())
            if t in eos:
                break
            out.append(t)
            x = torch.tensor([[t]])
    return out


@pytest.mark.slow
def test_every_matmul_carries_the_gguf_blocks(genai):
    import json

    meta = json.loads((genai.folder / "llmspace_genai.json").read_text())
    assert meta["matmuls"]["kept_fp32"] == [] and meta["matmuls"]["q4_1"] > 0 and meta["matmuls"]["q8_0"] == 1


@pytest.mark.slow
def test_greedy_output_equals_pytorch_on_fixed_prompts(genai, torch_model):
    from llmspace.engine.base import Message

    for prompt in PROMPTS_EXACT:
        messages = [Message(**m) for m in prompt]
        want = _torch_greedy(torch_model, genai.encode_prompt(messages), 64, genai.eos_ids)
        assert genai.greedy_ids(messages, 64) == want


@pytest.mark.slow
def test_next_token_agrees_with_pytorch_under_teacher_forcing(genai, torch_model):
    """Fed PyTorch's own continuation, the genai model picks the same next token at >= 95% of positions
    (measured 97.8%; the builder's own -p int4 gets 67%)."""
    import torch

    from llmspace.engine.base import GenerationParams, Message

    agree = total = 0
    for prompt in PROMPTS_FORCED:
        ids = genai.encode_prompt([Message(**m) for m in prompt])
        ref = _torch_greedy(torch_model, ids, 48, set())
        with torch.inference_mode():
            want = torch_model(torch.tensor([ids + ref])).logits[0, len(ids) - 1:-1].argmax(-1).tolist()
        choices: list[int] = []

        def feed(logits, choices=choices, ref=ref):  # note genai's choice, continue with PyTorch's token
            choices.append(int(np.argmax(logits)))
            return ref[len(choices) - 1]

        seq = genai.start(ids, GenerationParams(max_new_tokens=len(ref)), choose=feed)
        for _ in ref:
            seq.step()
        seq.close()
        agree += sum(a == b for a, b in zip(choices, want))
        total += len(want)
    assert agree / total >= 0.95, f"{agree}/{total}"


@pytest.mark.slow
def test_requests_running_together_give_the_tokens_they_give_alone(genai):
    """Through the engine thread: concurrent requests share its steps and keep their own tokens."""
    from concurrent.futures import ThreadPoolExecutor

    from llmspace.engine.base import GenerationParams, Message, complete

    asks = [[Message("user", q)] for q in ("List three uses of a paperclip.", "Why is the sky blue?",
                                           "Name a prime number.")]
    params = GenerationParams(max_new_tokens=12)
    alone = [complete(genai, m, params).text for m in asks]
    streams = [genai.stream(m, params) for m in asks]  # all queued before any is read

    def read(stream):
        return "".join(d.text for d in stream)

    with ThreadPoolExecutor(len(streams)) as pool:
        together = list(pool.map(read, streams))
    assert together == alone
    assert genai.scheduler.stats.max_batch >= 2


@pytest.mark.slow
def test_stream_ends_with_usage_and_finish_reason(genai):
    from llmspace.engine.base import GenerationParams, Message, complete

    c = complete(genai, [Message("user", "What is the capital of France? Answer in one sentence.")],
                 GenerationParams(max_new_tokens=30))
    assert "Paris" in c.text and c.finish_reason == "stop"
    assert c.usage.completion_tokens > 0 and c.timings["total_s"] > 0
    c = complete(genai, [Message("user", "Count from one to twenty.")], GenerationParams(max_new_tokens=3))
    assert c.finish_reason == "length" and c.usage.completion_tokens == 3
