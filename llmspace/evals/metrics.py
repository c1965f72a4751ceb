"""Per-run figures from per-case results.

Definitions (the report prints them too):

* pass rate — cases whose assertions all pass and that raised no error / all cases.
* cites its source (the headline) — RAG answers in which the *model* wrote a
  valid ``[n]`` and the support check found the cited passage supports the
  answer / RAG answers. Citations llmspace attached or quoted never count here.
* native citation rate — RAG answers with >= 1 valid citation the model wrote.
* attached rate — RAG answers carrying a citation llmspace attached because the
  model cited nothing (shown labelled as llmspace's).
* quoted rate — RAG answers that are extractive quotes, cited by construction.
* supported citation rate — RAG answers with a valid citation (any origin)
  whose passage supports the answer: a generated answer that passed the support
  check, or an extractive quote.
* citation rate (any origin) — RAG answers with >= 1 valid citation of any
  origin / RAG answers; kept for comparing with older runs.
* citation precision — mean over RAG answers with >= 1 valid citation of
  (valid cited sources that match a gold source) / (valid cited sources);
  only cases with ``gold_sources``.
* context recall@k — mean over RAG cases with ``gold_sources`` of
  (gold entries found among the k retrieved chunks) / (gold entries).
* latency — total seconds per answer (retrieval + generation), errors excluded.
* cost — see ``config.py``; per answer and per 1k (prompt + completion) tokens.
"""

from __future__ import annotations

import math

from llmspace.evals.results import CaseResult, SourceRef


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _refs(dicts: list[dict]) -> list[SourceRef]:
    return [SourceRef(**d) for d in dicts]


def citation_precision(r: CaseResult) -> float | None:
    # a set: citing the same chunk three times is one citation
    cited = list({c.chunk_id: c for c in _refs(r.cited) if c.valid}.values())
    if not cited or not r.gold_sources:
        return None
    return sum(any(c.matches(g) for g in r.gold_sources) for c in cited) / len(cited)


def context_recall(r: CaseResult) -> float | None:
    if r.kind != "rag" or not r.gold_sources or r.error:
        return None
    got = _refs(r.retrieved)
    return sum(any(c.matches(g) for c in got) for g in r.gold_sources) / len(r.gold_sources)


def compute_metrics(results: list[CaseResult]) -> dict:
    n = len(results)
    ok = [r for r in results if not r.error]
    rag = [r for r in results if r.kind == "rag"]
    cited_any = [r for r in rag if not r.error and r.valid_cited]
    answered = [r for r in rag if not r.error]

    def share(pred) -> float | None:
        return sum(1 for r in answered if pred(r)) / len(rag) if rag else None

    def has(r: CaseResult, origin: str) -> bool:
        return any(c.get("origin", "model") == origin for c in r.valid_cited)
    precisions = [p for p in (citation_precision(r) for r in rag if not r.error) if p is not None]
    recalls = [x for x in (context_recall(r) for r in rag) if x is not None]
    lat = [r.total_s for r in ok if r.total_s is not None]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    prompt_toks = sum(r.prompt_tokens for r in ok)
    compl_toks = sum(r.completion_tokens for r in ok)
    costs = [r.cost_usd for r in ok if r.cost_usd is not None]
    total_cost = sum(costs) if costs else None
    by_tag: dict[str, dict] = {}
    for r in results:
        for tag in r.tags or ["(untagged)"]:
            t = by_tag.setdefault(tag, {"n": 0, "passed": 0})
            t["n"] += 1
            t["passed"] += int(r.passed)
    for t in by_tag.values():
        t["pass_rate"] = t["passed"] / t["n"]
    judged = [r.judge["faithfulness"] for r in ok if r.judge and r.judge.get("faithfulness") is not None]
    ks = [len(r.retrieved) for r in rag if r.retrieved]
    return {
        "n_cases": n,
        "n_passed": sum(r.passed for r in results),
        "n_errors": n - len(ok),
        "pass_rate": sum(r.passed for r in results) / n if n else None,
        "pass_rate_by_tag": dict(sorted(by_tag.items())),
        "n_rag": len(rag),
        "citation_rate": len(cited_any) / len(rag) if rag else None,
        "cites_source_rate": share(lambda r: has(r, "model") and r.supported is True),
        "native_citation_rate": share(lambda r: has(r, "model")),
        "attached_citation_rate": share(lambda r: has(r, "attached")),
        "quoted_citation_rate": share(lambda r: has(r, "extractive")),
        # a generated answer that passed the support check, or a quote (supported by construction)
        "supported_citation_rate": share(lambda r: ((has(r, "model") or has(r, "attached")) and r.supported is True)
                                         or has(r, "extractive")),
        "citation_precision": _mean(precisions),
        "context_recall_at_k": _mean(recalls),
        "k": max(ks) if ks else None,
        "latency_mean_s": _mean(lat),
        "latency_p50_s": percentile(lat, 50),
        "latency_p95_s": percentile(lat, 95),
        "ttft_mean_s": _mean(ttft),
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p95_s": percentile(ttft, 95),
        "prompt_tokens": prompt_toks,
        "completion_tokens": compl_toks,
        "tokens_per_answer": (prompt_toks + compl_toks) / len(ok) if ok else None,
        "cost_usd": total_cost,
        "cost_per_answer_usd": total_cost / len(costs) if costs else None,
        "cost_per_1k_tokens_usd": (total_cost / (prompt_toks + compl_toks) * 1000
                                   if total_cost is not None and prompt_toks + compl_toks else None),
        "judge_faithfulness_mean": _mean(judged),
    }


# Metrics that `eval diff` and the regression gate compare; True: higher is better.
COMPARED = {
    "pass_rate": True, "cites_source_rate": True, "native_citation_rate": True, "supported_citation_rate": True,
    "citation_rate": True, "citation_precision": True, "context_recall_at_k": True,
    "latency_p50_s": False, "latency_p95_s": False, "ttft_p50_s": False,
    "tokens_per_answer": False, "cost_per_answer_usd": False, "judge_faithfulness_mean": True,
}
GATED = ("pass_rate", "cites_source_rate", "supported_citation_rate")  # --fail-on-regression: any drops


def summary_lines(m: dict, cost_note: str | None = None) -> list[str]:
    """A short human summary (CLI and UI)."""

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def sec(x):
        return "n/a" if x is None else f"{x:.2f}s"

    def usd(x):
        return "n/a" if x is None else f"${x:.6f}"

    lines = [
        f"cases: {m['n_cases']}  passed: {m['n_passed']}  errors: {m['n_errors']}  pass rate: {pct(m['pass_rate'])}",
        f"cites its source (model's own [n], supported): {pct(m.get('cites_source_rate'))} of {m['n_rag']} RAG "
        f"answers  native citation rate {pct(m.get('native_citation_rate'))}  "
        f"supported (any origin) {pct(m.get('supported_citation_rate'))}",
        f"citations by origin: quoted (extractive) {pct(m.get('quoted_citation_rate'))}  attached by llmspace "
        f"{pct(m.get('attached_citation_rate'))}  any origin {pct(m['citation_rate'])}  "
        f"citation precision: {pct(m['citation_precision'])}  "
        f"context recall@{m['k'] or 'k'}: {pct(m['context_recall_at_k'])}",
        f"latency mean {sec(m['latency_mean_s'])}  p50 {sec(m['latency_p50_s'])}  p95 {sec(m['latency_p95_s'])}  "
        f"(ttft p50 {sec(m['ttft_p50_s'])})",
        f"tokens: {m['prompt_tokens']} prompt + {m['completion_tokens']} completion  "
        f"cost: {usd(m['cost_usd'])} total, {usd(m['cost_per_answer_usd'])}/answer, "
        f"{usd(m['cost_per_1k_tokens_usd'])}/1k tokens",
    ]
    if cost_note:
        lines.append(f"cost model: {cost_note}")
    if m.get("judge_faithfulness_mean") is not None:
        lines.append(f"LLM-as-judge faithfulness (model-graded, not ground truth): "
                     f"{m['judge_faithfulness_mean']:.2f}")
    tags = m.get("pass_rate_by_tag") or {}
    if tags:
        lines.append("by tag: " + "  ".join(f"{t} {v['passed']}/{v['n']}" for t, v in tags.items()))
    return lines
