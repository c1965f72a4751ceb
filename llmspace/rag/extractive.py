"""Extractive answers: the sentences of the retrieved chunks that best support
the question, each followed by its citation. No generation, so it works for any
language the index holds, and it is what answers fall back to when the chat
model cannot handle the question's language or cites nothing it can support.

A sentence's score is the IDF-weighted share of the question's terms it
contains (the same ``coverage`` retrieval uses), plus, for English questions,
its embedding similarity to the question, or, for Chinese questions, the share
of the question's character bigrams it contains (robust to jieba splitting the
same words differently in two contexts), plus small bonuses for the chunk's
retrieval rank and for a heading that matches the question.
"""

from __future__ import annotations

import re

from llmspace.rag.citations import snippet
from llmspace.rag.text import analyze, cjk_bigrams, detect_lang, sentence_spans
from llmspace.rag.types import Citation, SearchHit

MAX_SENTENCES = 3
MIN_SENTENCE_CHARS = 12
_SKIP_RE = re.compile(r"^\s*(?:#|\||```|~~~|[-*_]{3,}\s*$)")



def candidate_sentences(hits: list[SearchHit]) -> list[tuple[int, int, int, str]]:
    """``(source number, start, end, sentence)``; start/end index the document text."""
    out = []
    for n, hit in enumerate(hits, start=1):
        c = hit.chunk
        for a, b in sentence_spans(c.text):
            s = c.text[a:b]
            if len(s) < MIN_SENTENCE_CHARS or _SKIP_RE.match(s):
                continue
            s = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", s)  # list markers
            s = re.sub(r"\[(\d{1,3})\]", r"［\1］", s)  # a quoted "[7]" must not read as our citation
            out.append((n, c.start + a, c.start + b, s))
    return out


def extractive_answer(question: str, hits: list[SearchHit], coverage, embedder=None,
                      max_sentences: int = MAX_SENTENCES) -> tuple[str, list[Citation]]:
    """``(answer text, citations)``. ``coverage(terms, sentence_terms)`` scores
    term overlap (``RagIndex.coverage``); ``embedder`` adds similarity for English."""
    cands = candidate_sentences(hits)
    if not cands:
        return "", []
    lang = detect_lang(question)
    terms = analyze(question)
    # a sentence under a heading that matches the question, in a higher-ranked chunk, is more likely the answer
    head = {n: 0.25 * coverage(terms, set(analyze(h.chunk.heading))) + 0.15 / n for n, h in enumerate(hits, 1)}
    scores = [coverage(terms, set(analyze(s))) + head[n] for n, _, _, s in cands]
    if embedder is not None and lang == "en":
        import numpy as np

        vecs = embedder.embed([question] + [s for *_, s in cands])
        sims = vecs[1:] @ vecs[0]
        scores = [x + 0.5 * float(np.clip(s, 0, 1)) for x, s in zip(scores, sims)]
    elif lang == "zh":
        qb = cjk_bigrams(question)
        if qb:
            scores = [x + 0.5 * len(qb & cjk_bigrams(s)) / len(qb) for x, (*_, s) in zip(scores, cands)]
    order = sorted(range(len(cands)), key=lambda i: -scores[i])
    chosen: list[int] = []
    seen_text: set[str] = set()
    for i in order:
        key = " ".join(cands[i][3].split()).lower()
        if key in seen_text:  # overlapping chunks repeat sentences
            continue
        seen_text.add(key)
        chosen.append(i)
        if len(chosen) == max_sentences:
            break
    top = scores[chosen[0]]
    chosen = [i for i in chosen if scores[i] >= 0.5 * top]  # drop weak tail sentences
    parts, citations = [], []
    for i in chosen:
        n, start, end, sentence = cands[i]
        parts.append(f"{sentence} [{n}]")
        hit = hits[n - 1]
        citations.append(Citation(n=n, chunk_id=hit.chunk.id, source=hit.chunk.source, heading=hit.chunk.heading,
                                  start=start, end=end, snippet=snippet(sentence), score=hit.score, valid=True))
    return ("" if lang == "zh" else " ").join(parts), citations
