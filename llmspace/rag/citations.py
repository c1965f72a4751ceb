"""Citation parsing and checking: ``[n]`` markers in a generated answer against
the numbered sources the model was given.

A marker naming a source that was not given is *invalid*: it is rewritten as
``[n?]`` in the shown text and listed in ``Answer.invalid_citations``, never
linked as if it were real.
"""

from __future__ import annotations

import re

from llmspace.rag.types import Citation, SearchHit

# [1]  [1, 2]  [1][2]  [source 1]  【1】  [1，2]
_MARKER_RE = re.compile(r"[\[【]\s*(?:sources?\s*|来源\s*)?(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]", re.I)
SNIPPET_CHARS = 240


def find_markers(text: str) -> list[tuple[int, int, list[int]]]:
    """Every citation marker as ``(start, end, [numbers])``."""
    return [(m.start(), m.end(), [int(x) for x in re.split(r"[,，、]", m.group(1))])
            for m in _MARKER_RE.finditer(text)]


def cited_numbers(text: str) -> list[int]:
    """Cited numbers in order of first appearance."""
    seen: list[int] = []
    for _, _, nums in find_markers(text):
        for n in nums:
            if n not in seen:
                seen.append(n)
    return seen


def strip_markers(text: str) -> str:
    return _MARKER_RE.sub(" ", text).strip()


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def citation_for(n: int, hit: SearchHit) -> Citation:
    c = hit.chunk
    return Citation(n=n, chunk_id=c.id, source=c.source, heading=c.heading, start=c.start, end=c.end,
                    snippet=snippet(c.text), score=hit.score, valid=True)


def check_citations(text: str, sources: list[SearchHit]) -> tuple[str, list[Citation], list[int]]:
    """``(text with invalid markers flagged, citations, invalid numbers)``.

    Valid citations come first in order of appearance; each invalid number also
    gets a ``Citation(valid=False)`` with empty provenance."""
    numbers = cited_numbers(text)
    invalid = [n for n in numbers if not 1 <= n <= len(sources)]
    citations = [citation_for(n, sources[n - 1]) for n in numbers if 1 <= n <= len(sources)]
    citations += [Citation(n=n, chunk_id="", source="", heading="", start=0, end=0, snippet="", score=0.0,
                           valid=False) for n in invalid]
    if invalid:
        def flag(m: re.Match) -> str:
            nums = [int(x) for x in re.split(r"[,，、]", m.group(1))]
            return "[" + ", ".join(f"{x}?" if x in invalid else str(x) for x in nums) + "]"
        text = _MARKER_RE.sub(flag, text)
    return text, citations, invalid
