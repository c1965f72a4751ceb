"""Runner, metrics, history, diff, gate and reports, with hand-made answers
(fast; the real model runs in test_eval_e2e.py)."""

from __future__ import annotations

import json
import re

import pytest

from llmspace.engine.base import Usage
from llmspace.evals.cases import load_eval_set
from llmspace.evals.config import EvalConfig
from llmspace.evals.diff import diff_runs, format_diff, regressions
from llmspace.evals.metrics import percentile
from llmspace.evals.report import write_reports
from llmspace.evals.results import SystemOutput, from_answer
from llmspace.evals.runner import EvalInterrupted, run_eval
from llmspace.evals.store import RunStore
from llmspace.rag.types import Answer, Chunk, Citation, SearchHit


def chunk(cid, source):
    return Chunk(id=cid, doc_id=cid.split(":")[0], source=source, title="t", heading="h", text=f"text of {cid}",
                 start=0, end=10)


def answer(text, cited_sources, retrieved_sources, invalid=()):
    hits = [SearchHit(chunk(f"{s.split('/')[-1]}:{i}", s), 1.0 / (i + 1), i + 1)
            for i, s in enumerate(retrieved_sources)]
    cits = []
    for s in cited_sources:
        i = retrieved_sources.index(s)
        cits.append(Citation(n=i + 1, chunk_id=hits[i].chunk.id, source=s, heading="h", start=0, end=5,
                             snippet="x", score=1.0))
    return Answer("q", text, cits, hits, invalid_citations=list(invalid), usage=Usage(100, 20),
                  timings={"retrieve_s": 0.01, "ttft_s": 0.1, "total_s": 0.5})


CASES = [
    {"id": "rag-good", "question": "dims?", "index": "roadmap", "gold_sources": ["en/05-rag.md"], "tags": ["en"],
     "assertions": [{"type": "contains", "value": "384"}, {"type": "must_cite", "value": "gold"}]},
    {"id": "rag-offgold", "question": "kv?", "index": "roadmap", "gold_sources": ["en/03.md"], "tags": ["en"],
     "assertions": [{"type": "must_cite"}]},
    {"id": "rag-nocite", "question": "分词?", "index": "roadmap", "gold_sources": ["zh/05-rag.md"], "tags": ["zh"],
     "assertions": [{"type": "must_cite"}]},
    {"id": "chat", "question": "hi", "tags": ["chat"],
     "assertions": [{"type": "regex", "value": "(?i)hello"}, {"type": "max_tokens", "value": 10}]},
]


class FakeSystem:
    def __init__(self, outputs, interrupt_at=None):
        self.outputs, self.calls, self.interrupt_at = outputs, 0, interrupt_at

    def __call__(self, case):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        out = self.outputs[case.id]
        if isinstance(out, Exception):
            raise out
        return out


def good_outputs(chat_text="Hello there"):
    return {
        "rag-good": from_answer(answer("It has 384 dims [1].", ["en/05-rag.md"], ["en/05-rag.md", "en/02.md"])),
        "rag-offgold": from_answer(answer("See [1] [2].", ["en/02.md", "en/03.md"], ["en/02.md", "en/03.md"])),
        "rag-nocite": from_answer(answer("jieba [7]", [], ["zh/01.md"], invalid=[7])),
        "chat": SystemOutput(chat_text, prompt_tokens=10, completion_tokens=5, ttft_s=0.05, total_s=0.2),
    }


@pytest.fixture
def eval_set(tmp_path):
    p = tmp_path / "set.jsonl"
    p.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in CASES), encoding="utf-8")
    return load_eval_set(p, known_indexes={"roadmap"})


@pytest.fixture
def store(settings):
    return RunStore(settings.db_path)


def test_run_records_every_case_and_computes_metrics(eval_set, store):
    cfg = EvalConfig(usd_per_hour=3.6)  # $0.001 per second of wall time
    run = run_eval(eval_set, FakeSystem(good_outputs()), store, config=cfg, git_rev="abc123")
    assert run.status == "complete" and run.git_rev == "abc123" and run.dataset_sha256 == eval_set.sha256
    r = {x.case_id: x for x in run.results}
    assert [a.passed for a in r["rag-good"].assertions] == [True, True]
    assert r["rag-offgold"].passed and not r["rag-nocite"].passed and r["chat"].passed
    assert r["rag-nocite"].assertions[0].detail == "only invalid citations [7]"
    assert r["rag-good"].retrieved[0]["source"] == "en/05-rag.md"
    m = run.metrics
    assert m["n_cases"] == 4 and m["pass_rate"] == 0.75
    assert m["citation_rate"] == pytest.approx(2 / 3)  # rag-nocite cites nothing valid
    assert m["citation_precision"] == pytest.approx((1.0 + 0.5) / 2)  # offgold: 1 of 2 cited is gold
    assert m["context_recall_at_k"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["k"] == 2
    assert m["pass_rate_by_tag"]["en"] == {"n": 2, "passed": 2, "pass_rate": 1.0}
    assert m["pass_rate_by_tag"]["zh"]["pass_rate"] == 0.0
    assert m["prompt_tokens"] == 310 and m["completion_tokens"] == 65
    assert m["cost_usd"] == pytest.approx(sum(x.total_s for x in run.results) * 0.001)
    assert m["cost_per_1k_tokens_usd"] == pytest.approx(m["cost_usd"] / 375 * 1000)
    assert run.config["cost"]["mode"] == "hardware"


def test_per_token_prices():
    cfg = EvalConfig(usd_per_1m_prompt_tokens=0.5, usd_per_1m_completion_tokens=1.5)
    assert cfg.cost_mode == "tokens" and "per-token" in cfg.describe_cost()
    assert cfg.case_cost(1_000_000, 1_000_000, 99.0) == pytest.approx(2.0)


def test_percentiles():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_errors_in_a_case_are_recorded_and_the_run_goes_on(eval_set, store):
    from llmspace.errors import ContextLengthError

    outs = good_outputs()
    outs["chat"] = ContextLengthError("too long")
    outs["rag-good"] = RuntimeError("boom")
    run = run_eval(eval_set, FakeSystem(outs), store)
    r = {x.case_id: x for x in run.results}
    assert r["chat"].error == "ContextLengthError: too long" and not r["chat"].passed
    assert r["rag-good"].error == "RuntimeError: boom"
    assert run.status == "complete" and run.metrics["n_errors"] == 2


def test_interrupted_run_is_stored_as_incomplete(eval_set, store):
    with pytest.raises(EvalInterrupted) as ei:
        run_eval(eval_set, FakeSystem(good_outputs(), interrupt_at=3), store)
    assert isinstance(ei.value, KeyboardInterrupt)
    run = store.get(ei.value.run_id)
    assert run.status == "incomplete" and not run.complete
    assert len(run.results) == 2 and run.metrics["n_cases"] == 2
    assert "interrupted" in run.note and "2/4" in run.note


def test_history_list_resolve_and_diff_shows_the_flipped_case(eval_set, store):
    a = run_eval(eval_set, FakeSystem(good_outputs()), store)
    b = run_eval(eval_set, FakeSystem(good_outputs(chat_text="Goodbye")), store)  # built to fail
    assert [r.id for r in store.list()] == [b.id, a.id]
    assert store.resolve("latest") == b.id and store.resolve("latest~1") == a.id
    d = diff_runs(store.get(a.id), store.get(b.id))
    assert [f.case_id for f in d.regressions] == ["chat"] and not d.fixes
    assert d.deltas["pass_rate"]["delta"] == pytest.approx(-0.25) and d.deltas["pass_rate"]["better"] is False
    text = format_diff(d)
    assert "chat: pass -> fail" in text and "regex '(?i)hello': pass -> fail (no match)" in text
    assert regressions(store.get(a.id), store.get(b.id)) == [
        f"pass_rate dropped from 0.750 to 0.500 (baseline {a.id})"]
    assert regressions(store.get(a.id), store.get(b.id), tolerance=0.3) == []


def test_unknown_run_says_what_to_do(store):
    from llmspace.errors import NotFoundError

    with pytest.raises(NotFoundError, match="llmspace eval ls"):
        store.get("nope")


def test_reports_are_self_contained(eval_set, store, tmp_path):
    run = run_eval(eval_set, FakeSystem(good_outputs()), store)
    paths = write_reports(run, tmp_path / "rep")
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["id"] == run.id and len(data["results"]) == 4 and data["metrics"]["pass_rate"] == 0.75
    page = paths["html"].read_text(encoding="utf-8")
    assert page.count("<svg") == 2  # latency histogram + per-tag pass rates
    assert not re.search(r"<(script|link)\b|src=\"http", page)
    assert "rag-nocite" in page and "分词?" in page and "hardware" in page
    assert not list((tmp_path / "rep").glob(".*"))  # no temp files left


def test_incomplete_report_says_so(eval_set, store, tmp_path):
    with pytest.raises(EvalInterrupted) as ei:
        run_eval(eval_set, FakeSystem(good_outputs(), interrupt_at=2), store)
    page = write_reports(store.get(ei.value.run_id), tmp_path)["html"].read_text(encoding="utf-8")
    assert "<b>incomplete</b>" in page


def test_citation_precision_counts_each_cited_chunk_once(tmp_path):
    from llmspace.evals.metrics import citation_precision
    from llmspace.evals.report import _cited_html
    from llmspace.evals.results import CaseResult

    gold = {"chunk_id": "05-rag:1", "source": "en/05-rag.md", "n": 1, "valid": True}
    other = {"chunk_id": "02:1", "source": "en/02.md", "n": 2, "valid": True}
    bad = [{"chunk_id": "", "source": "", "n": n, "valid": False} for n in range(3, 12)]
    r = CaseResult("c", "rag", "q", [], ["en/05-rag.md"], cited=[gold, gold, gold, other, *bad])
    assert citation_precision(r) == 0.5
    html = _cited_html(r.cited)
    assert html.count("en/05-rag.md") == 1 and "invalid: [3] [4] [5] [6] [7] … (9)" in html


def test_charts_use_figures_not_pyplot_and_render_from_many_threads():
    """pyplot's current figure and backend are process-global; server threads must not share them."""
    import subprocess
    import sys

    code = ("import sys\nfrom llmspace.evals.report import latency_histogram_svg, tag_pass_rates_svg\n"
            "a = latency_histogram_svg([0.1, 0.2, 0.3, 0.4, 0.5], 0.3, 0.5)\n"
            "b = tag_pass_rates_svg({'en': {'pass_rate': 0.5, 'passed': 1, 'n': 2}})\n"
            "assert a.startswith('<svg') and b.startswith('<svg')\n"
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

    from concurrent.futures import ThreadPoolExecutor

    from llmspace.evals.report import latency_histogram_svg, tag_pass_rates_svg

    def render(i):
        tags = {f"tag{i}-{j}": {"pass_rate": j / 4, "passed": j, "n": 4} for j in range(1 + i % 4)}
        return latency_histogram_svg([0.1 * k for k in range(1, 3 + i)]), tag_pass_rates_svg(tags), i

    with ThreadPoolExecutor(8) as pool:
        for hist, bars, i in pool.map(render, range(24)):
            assert hist.count("<svg") == 1 and "Latency" in hist
            assert all(f"tag{i}-{j}" in bars for j in range(1 + i % 4)) and f"tag{(i + 1) % 24}-0" not in bars
