"""Retrieval quality on a labelled question set (``data/roadmap_qa.jsonl``).

Each row: ``{"id", "lang", "question", "source", "answer_contains", "evidence"}``.
A hit is *right* when its chunk comes from ``source``; recall@k is the share of
questions with a right hit in the top k, MRR the mean of 1/rank of the first
right hit. ``evidence@k`` is stricter: a top-k chunk contains one of the
``answer_contains`` strings (so the answer is really in what the model sees).
"""

from __future__ import annotations

import json
from pathlib import Path

from llmspace.errors import ValidationError
from llmspace.rag.retrieve import RetrievalParams, Retriever

QA_FILE = Path(__file__).resolve().parent.parent / "data" / "roadmap_qa.jsonl"
REQUIRED = ("id", "lang", "question", "source")


def load_qa(path: Path = QA_FILE) -> list[dict]:
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValidationError(f"{path}:{i}: not valid JSON ({exc}).") from None
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValidationError(f"{path}:{i}: missing {', '.join(missing)}.")
        rows.append(row)
    return rows


def evaluate(retriever: Retriever, rows: list[dict], modes=("bm25", "dense", "hybrid"), k: int = 5,
             params: RetrievalParams | None = None) -> dict:
    """``{mode: {lang: {"n", "recall@1", "recall@5", "mrr", "evidence@5"}}}`` (lang includes "all")."""
    base = params or RetrievalParams()
    out: dict = {}
    for mode in modes:
        p = RetrievalParams(**{**base.__dict__, "mode": mode, "top_k": k})
        per: dict[str, list[tuple[int | None, bool]]] = {}
        for row in rows:
            hits = retriever.search(row["question"], p)
            first = next((h.rank for h in hits if h.chunk.source == row["source"]), None)
            needles = [s.lower() for s in row.get("answer_contains", [])]
            ev = any(any(n in h.chunk.text.lower() for n in needles) for h in hits) if needles else False
            for lang in (row["lang"], "all"):
                per.setdefault(lang, []).append((first, ev))
        out[mode] = {lang: _metrics(v, k) for lang, v in sorted(per.items())}
    return out


def _metrics(results: list[tuple[int | None, bool]], k: int) -> dict:
    n = len(results)
    return {
        "n": n,
        "recall@1": round(sum(1 for r, _ in results if r == 1) / n, 3),
        f"recall@{k}": round(sum(1 for r, _ in results if r is not None and r <= k) / n, 3),
        "mrr": round(sum(1 / r for r, _ in results if r is not None) / n, 3),
        f"evidence@{k}": round(sum(1 for _, e in results if e) / n, 3),
    }


def format_table(results: dict) -> str:
    lines = [f"{'mode':<8} {'lang':<4} {'n':>3} {'R@1':>6} {'R@5':>6} {'MRR':>6} {'Ev@5':>6}"]
    for mode, per in results.items():
        for lang, m in per.items():
            lines.append(f"{mode:<8} {lang:<4} {m['n']:>3} {m['recall@1']:>6.3f} {m['recall@5']:>6.3f} "
                         f"{m['mrr']:>6.3f} {m['evidence@5']:>6.3f}")
    return "\n".join(lines)
