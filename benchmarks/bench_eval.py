"""Eval figures: the runner's own overhead, and the starter set on the real model.

    .venv/bin/python benchmarks/bench_eval.py [--cases 300] [--real] [--max-tokens 96]

1. Overhead (always): N synthetic cases through ``run_eval`` with a system that
   answers instantly, so what is timed is ours — assertions, one SQLite write
   per case, metrics — then the HTML + JSON report. Medians over --runs.
2. ``--real``: the bundled starter set with the default model and RAG (what
   ``llmspace eval run`` does on a fresh install): pass rate, citation rate,
   latency p50/p95, tokens and cost, next to the overhead measured in (1) so
   the share of the runner in a real run is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from llmspace.device import cpu_name


def overhead(n_cases: int, runs: int) -> dict:
    from llmspace.evals.cases import load_eval_set
    from llmspace.evals.report import write_reports
    from llmspace.evals.results import SourceRef, SystemOutput
    from llmspace.evals.runner import run_eval
    from llmspace.evals.store import RunStore

    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    lines = []
    for i in range(n_cases):
        lines.append(json.dumps({"id": f"c{i}", "question": f"question {i}?", "index": "roadmap",
                                 "gold_sources": ["en/05-rag.md"], "tags": ["en" if i % 2 else "zh", "rag"],
                                 "assertions": [{"type": "contains", "value": "answer"},
                                                {"type": "regex", "value": r"\[\d+\]"},
                                                {"type": "must_cite", "value": "gold"}]}))
    path = tmp / "synthetic.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    refs = [SourceRef(f"05-rag:{k}", "en/05-rag.md", n=k + 1) for k in range(5)]
    out = SystemOutput("the answer is here [1]", retrieved=refs, cited=refs[:1], prompt_tokens=400,
                       completion_tokens=40, ttft_s=0.2, total_s=1.0)
    load_s, run_s, report_s = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        s = load_eval_set(path)
        load_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        run = run_eval(s, lambda case: out, RunStore(tmp / "bench.db"), git_rev="bench")
        run_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        write_reports(run, tmp / run.id)
        report_s.append(time.perf_counter() - t0)
    return {"cases": n_cases, "load_set_s": statistics.median(load_s), "run_s": statistics.median(run_s),
            "per_case_ms": 1000 * statistics.median(run_s) / n_cases, "cases_per_s": n_cases / statistics.median(run_s),
            "report_s": statistics.median(report_s)}


def real(max_tokens: int | None) -> dict:
    from llmspace.config import Settings
    from llmspace.evals.api import run_set
    from llmspace.services import Services

    services = Services(Settings.load())
    t0 = time.perf_counter()
    outcome = run_set(services, None, max_tokens=max_tokens)
    wall = time.perf_counter() - t0
    m = outcome.run.metrics
    return {"run": outcome.run.id, "wall_s": wall, "report": str(outcome.reports["html"]),
            **{k: m[k] for k in ("n_cases", "pass_rate", "citation_rate", "citation_precision",
                                 "context_recall_at_k", "latency_mean_s", "latency_p50_s", "latency_p95_s",
                                 "ttft_p50_s", "prompt_tokens", "completion_tokens", "cost_usd",
                                 "cost_per_answer_usd", "cost_per_1k_tokens_usd")},
            "cost_model": outcome.run.config["cost"]["description"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="also run the starter set on the real model")
    ap.add_argument("--max-tokens", type=int, help="max new tokens per answer for --real")
    args = ap.parse_args()
    os.environ.setdefault("LLMSPACE_HOME", tempfile.mkdtemp(prefix="bench-eval-home-"))
    print(f"machine: {os.cpu_count()} cores, {cpu_name()}, Python {platform.python_version()}")
    o = overhead(args.cases, args.runs)
    print(f"runner overhead: {o['cases']} cases in {o['run_s']:.2f}s = {o['per_case_ms']:.2f} ms/case "
          f"({o['cases_per_s']:.0f} cases/s, one SQLite write each); load+validate {o['load_set_s'] * 1000:.0f} ms; "
          f"report (JSON + HTML with 2 SVG charts) {o['report_s']:.2f}s  [median of {args.runs}]")
    if args.real:
        r = real(args.max_tokens)
        print(json.dumps(r, indent=2))
        share = o["per_case_ms"] / 1000 / r["latency_mean_s"] if r["latency_mean_s"] else 0
        print(f"runner share of a real case: {100 * share:.3f}% of the mean answer latency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
