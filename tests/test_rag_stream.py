"""RAG over SSE on a real server: events leave as the engine makes them, and
RAG generations are counted in /metrics like chat ones."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from test_rag_docs import BEES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def notes(live_server):
    r = httpx.post(f"{live_server}/v1/rag/indexes/stream-notes", files=[("files", ("bees.md", BEES.encode()))],
                   timeout=120)
    assert r.status_code == 200, r.text
    return "stream-notes"


def _generated(metrics_text: str) -> float:
    m = re.search(r'^llmspace:generation_tokens_total\{model="[^"]+"\} ([0-9.e+]+)$', metrics_text, re.M)
    return float(m.group(1)) if m else 0.0


def test_rag_sse_first_delta_arrives_before_the_last(live_server, notes):
    body = {"index": notes, "question": "How do honey bees keep warm in winter?", "stream": True,
            "answer_mode": "generate", "max_tokens": 48}
    arrivals: list[tuple[float, dict]] = []
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{live_server}/v1/rag/answer", json=body, timeout=180) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                arrivals.append((time.perf_counter() - t0, json.loads(line[6:])))
    deltas = [t for t, e in arrivals if e["type"] == "delta"]
    final_t = [t for t, e in arrivals if e["type"] == "answer"][0]
    assert len(deltas) >= 3
    # generated token by token: the first delta leaves long before the answer is done (a list built
    # before the first send made every event arrive within a few milliseconds of the last)
    # (relative to the generation only: retrieval before it may take longer than a short answer)
    assert final_t - deltas[0] > 0.1 and deltas[-1] - deltas[0] > 0.05, arrivals


def test_rag_generation_counts_in_metrics(live_server, notes):
    before = _generated(httpx.get(f"{live_server}/metrics").text)
    r = httpx.post(f"{live_server}/v1/rag/answer", timeout=180,
                   json={"index": notes, "question": "How much honey should a beekeeper leave in the hive?",
                         "answer_mode": "generate", "max_tokens": 24})
    assert r.status_code == 200, r.text
    used = r.json()["usage"]["completion_tokens"]
    assert used > 0
    after = _generated(httpx.get(f"{live_server}/metrics").text)
    assert after - before == used
