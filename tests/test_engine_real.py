"""The real default model (SmolLM2-135M-Instruct), greedy, on CPU."""

import pytest

from llmspace.engine.base import GenerationParams, Message, complete
from llmspace.errors import ContextLengthError

pytestmark = pytest.mark.slow

FRANCE = [Message("user", "What is the capital of France?")]


@pytest.fixture(scope="module")
def engine(session_services):
    return session_services.engine.load()


def test_greedy_answer_is_fixed(engine):
    c = complete(engine, FRANCE, GenerationParams(max_new_tokens=30))
    assert c.text == "The capital of France is Paris."
    assert c.finish_reason == "stop"
    assert c.usage.prompt_tokens == 37 and c.usage.completion_tokens == 7
    assert c.timings["ttft_s"] > 0 and c.timings["total_s"] >= c.timings["ttft_s"]


def test_stream_joins_to_the_same_answer(engine):
    deltas = list(engine.stream(FRANCE, GenerationParams(max_new_tokens=30)))
    assert len([d for d in deltas if d.text]) > 3  # token by token, not one blob
    assert "".join(d.text for d in deltas) == "The capital of France is Paris."
    assert deltas[-1].finish_reason == "stop" and all(d.finish_reason is None for d in deltas[:-1])


def test_length_finish_and_exact_token_budget(engine):
    c = complete(engine, FRANCE, GenerationParams(max_new_tokens=3))
    assert c.finish_reason == "length" and c.usage.completion_tokens == 3


def test_stop_string_cuts_and_is_not_emitted(engine):
    c = complete(engine, FRANCE, GenerationParams(max_new_tokens=30, stop=[" Paris"]))
    assert c.text == "The capital of France is" and c.finish_reason == "stop"


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(engine):
    p = GenerationParams(max_new_tokens=25, temperature=1.2, top_p=0.95, top_k=50, seed=7)
    msgs = [Message("user", "Tell me a story about a cat.")]
    a, b = complete(engine, msgs, p), complete(engine, msgs, p)
    assert a.text == b.text
    others = {complete(engine, msgs, GenerationParams(max_new_tokens=25, temperature=1.2, seed=s)).text
              for s in (1, 2, 3)}
    assert len(others) > 1


def test_prompt_over_context_window_says_by_how_much(engine):
    long = [Message("user", "word " * 9000)]
    with pytest.raises(ContextLengthError, match=r"tokens too long"):
        list(engine.stream(long, GenerationParams(max_new_tokens=5)))


def test_chinese_text_round_trips_through_the_tokenizer(engine):
    tok = engine.tokenizer
    text = "你好，世界。Hello"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
