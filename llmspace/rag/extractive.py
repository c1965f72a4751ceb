"""Extractive answers: the one or two sentences of the retrieved chunks that
best answer the question (scored by ``evidence.score_sentences``), each
followed by the citation of where it was quoted from. No generation, so it
works for any language the index holds; it is what generated answers fall back
to when the chat model cannot handle the question's language or its answer
fails the support check.

A second sentence is added only when it scores nearly as well as the first
(``SECOND_RATIO``), or when the question asks for a number or a date that the
first sentence lacks and the second has: nothing unrelated pads the answer.
"""

from __future__ import annotations

from llmspace.rag.citations import snippet
from llmspace.rag.evidence import Sentence, asked_kind, has_kind
from llmspace.rag.text import detect_lang
from llmspace.rag.types import Citation, SearchHit

MAX_SENTENCES = 2
# a second sentence when it scores at least this share of the first; chosen per question language on
# the dev split (benchmarks/bench_answers.py --tune)
SECOND_RATIO = {"en": 0.95, "zh": 0.8}


def choose_sentences(question: str, ranked: list[Sentence], max_sentences: int = MAX_SENTENCES,
                     second_ratio: float | None = None) -> list[Sentence]:
    if not ranked:
        return []
    if second_ratio is None:
        second_ratio = SECOND_RATIO["zh" if detect_lang(question) == "zh" else "en"]
    best = ranked[0]
    chosen = [best]
    kind = asked_kind(question)
    for s in ranked[1:]:
        if len(chosen) >= max_sentences:
            break
        fills_gap = bool(kind) and not has_kind(best.text, kind, question) and has_kind(s.text, kind, question) \
            and s.score >= 0.75 * best.score
        if s.score >= second_ratio * best.score or fills_gap:
            chosen.append(s)
    return chosen


def sentence_citation(s: Sentence, hit: SearchHit) -> Citation:
    return Citation(n=s.n, chunk_id=hit.chunk.id, source=hit.chunk.source, heading=hit.chunk.heading,
                    start=s.start, end=s.end, snippet=snippet(s.text), score=hit.score, valid=True,
                    origin="extractive")


def extractive_answer(question: str, ranked: list[Sentence], hits: list[SearchHit],
                      max_sentences: int = MAX_SENTENCES) -> tuple[str, list[Citation]]:
    """``(answer text, citations)`` from sentences already scored against the question."""
    chosen = choose_sentences(question, ranked, max_sentences)
    if not chosen:
        return "", []
    parts = [f"{s.text} [{s.n}]" for s in chosen]
    citations = [sentence_citation(s, hits[s.n - 1]) for s in chosen]
    return ("" if detect_lang(question) == "zh" else " ").join(parts), citations
