"""Retrieval: dense, BM25 and hybrid (weighted reciprocal-rank fusion), then an
optional cross-encoder rerank, a score threshold and MMR diversity.

Fusion weights depend on the query's language and the embedding model: the
default embedder (MiniLM) is English-only (most Chinese characters are [UNK] to
its tokenizer), so for Chinese queries its ranking gets weight 0 and BM25 with
jieba terms ranks alone; with a multilingual embedder both count. Measured on
the labelled roadmap questions (``benchmarks/bench_rag.py``): any dense weight
above 0 for Chinese made hybrid worse than BM25-only (R@1 0.94 -> 0.90 at 0.02,
0.80 at 0.25), while English hybrid at 1:1 matched or beat both.

Every hit carries all its scores in ``SearchHit.scores``: ``dense`` (cosine),
``bm25`` (raw), their ranks among the candidates, ``rrf``, ``coverage`` (the
IDF-weighted share of the query's terms present in the chunk) and ``rerank``.
``SearchHit.score`` is the score of the mode used: cosine, BM25, normalised RRF
in (0, 1] (1 = first in every retriever), or the reranker's probability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmspace.errors import ValidationError
from llmspace.rag.chunking import embed_text
from llmspace.rag.index import RagIndex
from llmspace.rag.text import analyze, cjk_bigrams, detect_lang
from llmspace.rag.types import SearchHit

MODES = ("hybrid", "dense", "bm25")
FUSION_WEIGHTS = {"en": {"dense": 1.0, "bm25": 1.0}, "zh": {"dense": 0.0, "bm25": 1.0}}
MULTILINGUAL_EMBEDDERS = ("multilingual", "m3", "e5", "labse", "gte-", "jina", "-zh", "text2vec")


def fusion_weights(lang: str, embedding_model: str) -> dict[str, float]:
    """RRF weights for a query language; an embedder that reads Chinese gets full weight."""
    if lang != "en" and any(m in embedding_model.lower() for m in MULTILINGUAL_EMBEDDERS):
        return {"dense": 1.0, "bm25": 1.0}
    return dict(FUSION_WEIGHTS.get(lang, FUSION_WEIGHTS["en"]))
MAX_QUERY_CHARS = 4000


@dataclass
class RetrievalParams:
    mode: str = "hybrid"
    top_k: int = 5
    candidates: int = 50  # per retriever, before fusion
    score_threshold: float | None = None  # drop hits whose ``score`` is below this
    mmr_lambda: float | None = None  # e.g. 0.7: relevance vs diversity; None = off
    rerank: bool = True  # use the cross-encoder when one is configured
    weights: dict | None = None  # fusion weights {"dense": w, "bm25": w}; None = by query language
    rrf_k: int = 60
    # "relevant enough to answer from" (see ``relevant``)
    min_coverage: float = 0.4
    min_dense: float = 0.3
    min_zh_overlap: float = 0.4

    def validate(self) -> "RetrievalParams":
        if self.mode not in MODES:
            raise ValidationError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}.", param="mode")
        if not isinstance(self.top_k, int) or not 1 <= self.top_k <= 100:
            raise ValidationError(f"top_k must be between 1 and 100; got {self.top_k}.", param="top_k")
        if self.mmr_lambda is not None and not 0 <= self.mmr_lambda <= 1:
            raise ValidationError(f"mmr_lambda must be in [0, 1]; got {self.mmr_lambda}.", param="mmr_lambda")
        if self.weights is not None and (set(self.weights) - {"dense", "bm25"}
                                         or any(w < 0 for w in self.weights.values())):
            raise ValidationError("weights takes non-negative 'dense' and 'bm25' keys only.", param="weights")
        return self


def check_query(query: str) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValidationError("The question is empty; type a question.", param="query")
    if len(query) > MAX_QUERY_CHARS:
        raise ValidationError(f"The question has {len(query)} characters; the limit is {MAX_QUERY_CHARS}. "
                              "Shorten it to the question itself.", param="query")
    return query.strip()


@dataclass
class Retriever:
    index: RagIndex
    embedder: object  # llmspace.embeddings.Embedder
    reranker: object | None = None  # sentence_transformers.CrossEncoder
    _chunk_terms: dict = field(default_factory=dict, repr=False)

    def search(self, query: str, params: RetrievalParams | None = None) -> list[SearchHit]:

        p = (params or RetrievalParams()).validate()
        query = check_query(query)
        if not len(self.index):
            return []
        lang = detect_lang(query)
        terms = analyze(query)
        n_cand = max(p.candidates, p.top_k * 4)
        qvec = None
        ranked: dict[str, list[tuple[int, float]]] = {}
        if p.mode in ("dense", "hybrid"):
            qvec = self.embedder.embed([query])[0]
            ranked["dense"] = self.index.dense_search(qvec, n_cand)
        if p.mode in ("bm25", "hybrid"):
            ranked["bm25"] = self.index.bm25_search(terms, n_cand)

        weights = p.weights or fusion_weights(lang, self.index.embedding_model)
        scores: dict[int, dict] = {}
        for name, hits in ranked.items():
            for rank, (row, s) in enumerate(hits, start=1):
                d = scores.setdefault(row, {"rrf": 0.0})
                d[name], d[f"{name}_rank"] = s, rank
                d["rrf"] += weights.get(name, 0.0) / (p.rrf_k + rank)
        if p.mode == "hybrid" and not weights.get("dense"):  # dense ranked nothing here: keep BM25's list
            scores = {r: d for r, d in scores.items() if "bm25" in d} or scores
        if not scores:
            return []
        rows = list(scores)
        if qvec is None:
            qvec = self.embedder.embed([query])[0]
        cos = self.index.vectors(rows) @ qvec  # dense similarity for every candidate (MMR, relevance)
        for row, c in zip(rows, cos):
            scores[row].setdefault("dense", float(c))

        norm = sum(weights.get(n, 0.0) for n in ranked) / (p.rrf_k + 1) or 1.0
        key = {"dense": "dense", "bm25": "bm25", "hybrid": "rrf"}[p.mode]
        for d in scores.values():
            d["rrf"] = d["rrf"] / norm
            d["score"] = float(d.get(key, 0.0))
        order = sorted(rows, key=lambda r: -scores[r]["score"])

        if self.reranker is not None and p.rerank:
            head = order[:max(20, p.top_k * 2)]
            pairs = [(query, embed_text(self.index.chunks[r])) for r in head]
            for r, s in zip(head, self.reranker.predict(pairs, show_progress_bar=False)):
                scores[r]["rerank"] = scores[r]["score"] = float(s)
            order = sorted(head, key=lambda r: -scores[r]["score"])

        if p.score_threshold is not None:
            order = [r for r in order if scores[r]["score"] >= p.score_threshold]
        if p.mmr_lambda is not None and len(order) > 1:
            order = mmr(order, {r: scores[r]["score"] for r in order}, self.index.vectors(order), p.mmr_lambda,
                        p.top_k)
        # term coverage (and, for Chinese, bigram overlap) of the returned hits only: it
        # tokenises each chunk, too slow to do for every candidate of a large index
        qbigrams = cjk_bigrams(query) if lang == "zh" else set()
        for row in order[:p.top_k]:
            scores[row]["coverage"] = round(self.index.coverage(terms, self.terms_of(row)), 4)
            if qbigrams:
                text = embed_text(self.index.chunks[row])
                scores[row]["bigrams"] = round(len(qbigrams & cjk_bigrams(text)) / len(qbigrams), 4)
        hits = []
        for rank, row in enumerate(order[:p.top_k], start=1):
            d = scores[row]
            hits.append(SearchHit(self.index.chunks[row], round(d["score"], 6), rank,
                                  {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()
                                   if k != "score"}))
        return hits

    def terms_of(self, row: int) -> set[str]:
        terms = self._chunk_terms.get(row)
        if terms is None:
            terms = self._chunk_terms[row] = set(analyze(embed_text(self.index.chunks[row])))
        return terms


def mmr(rows: list[int], rel: dict[int, float], vecs, lam: float, k: int) -> list[int]:
    """Maximal marginal relevance: pick ``k`` rows trading relevance (scaled to
    [0, 1]) against similarity to the rows already picked."""

    hi, lo = max(rel.values()), min(rel.values())
    span = (hi - lo) or 1.0
    sims = vecs @ vecs.T
    chosen: list[int] = []
    left = list(range(len(rows)))
    while left and len(chosen) < k:
        def value(i: int) -> float:
            redundancy = max((sims[i, j] for j in chosen), default=0.0)
            return lam * (rel[rows[i]] - lo) / span - (1 - lam) * redundancy
        best = max(left, key=value)
        chosen.append(best)
        left.remove(best)
    return [rows[i] for i in chosen] + [rows[i] for i in left]


def relevant(hits: list[SearchHit], query: str, params: RetrievalParams | None = None) -> list[SearchHit]:
    """The hits good enough to answer from.

    English: the embedding similarity is at least ``min_dense`` or the chunk holds
    ``min_coverage`` of the query's IDF-weighted terms. Chinese (the English-only
    embedder's similarities mean nothing there): term coverage plus the share of
    the query's character bigrams in the chunk reaches ``min_zh_overlap``.
    Thresholds were set on the 98 labelled roadmap questions against 16
    off-topic ones (``benchmarks/bench_rag.py`` reports both shares)."""
    p = params or RetrievalParams()
    lang = detect_lang(query)
    out = []
    for h in hits:
        cov = h.scores.get("coverage", 0.0)
        if lang == "zh":
            ok = cov + h.scores.get("bigrams", 0.0) >= p.min_zh_overlap or cov >= 2 * p.min_coverage
        else:
            ok = cov >= p.min_coverage or h.scores.get("dense", 0.0) >= p.min_dense
        if ok or ("rerank" in h.scores and h.score >= 0.5):
            out.append(h)
    return out


def load_reranker(name: str, device: str = "cpu"):
    """A sentence-transformers CrossEncoder from a local folder (or a Hub id where a network exists)."""
    from pathlib import Path

    from llmspace.errors import ModelNotFoundError

    try:
        from sentence_transformers import CrossEncoder
    except ImportError:  # pragma: no cover - a declared dependency
        from llmspace.errors import DependencyError

        raise DependencyError("The reranker needs sentence-transformers: pip install sentence-transformers") from None
    path = Path(name).expanduser()
    try:
        return CrossEncoder(str(path) if path.exists() else name, device=device)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"Cannot load reranker {name!r} ({exc}). Set LLMSPACE_RERANKER_MODEL to a local "
                                 "cross-encoder folder, or unset it.", param="reranker_model") from None
