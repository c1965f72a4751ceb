"""Chunking: a ``Document`` into ``Chunk``s that keep their provenance.

1. Sections: Markdown headings (outside code fences) split the text; each
   section remembers its heading path ("Chapter > Section").
2. Sentences: English and Chinese punctuation, plus list items and table rows.
   PDF pages are boundaries too (each chunk has one page number).
3. Packing: sentences are packed greedily up to ``chunk_tokens`` tokens *of the
   embedding model's tokenizer* (what the embedder truncates on); the next chunk
   starts with the last ``overlap_tokens`` worth of sentences of the previous
   one. A sentence longer than a chunk is cut on token boundaries.

A chunk's ``text`` is exactly ``document.text[start:end]``; the heading path is
kept apart (and prepended only to what is embedded and BM25-indexed).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable

from llmspace.rag.ingest import Document
from llmspace.rag.text import approx_token_count, detect_lang, sentence_spans
from llmspace.rag.types import Chunk

CHUNKER_VERSION = 1  # bump when the output for the same settings changes: indexes are then rebuilt


@dataclass(frozen=True)
class ChunkerSettings:
    chunk_tokens: int = 160
    overlap_tokens: int = 32
    min_chunk_chars: int = 8  # drop fragments shorter than this (stray punctuation, empty headings)
    version: int = CHUNKER_VERSION

    def __post_init__(self) -> None:
        from llmspace.errors import ValidationError

        if self.chunk_tokens < 16:
            raise ValidationError(f"chunk_tokens must be >= 16; got {self.chunk_tokens}.", param="chunk_tokens")
        if not 0 <= self.overlap_tokens < self.chunk_tokens // 2:
            raise ValidationError(f"overlap_tokens must be between 0 and chunk_tokens/2 ({self.chunk_tokens // 2}); "
                                  f"got {self.overlap_tokens}.", param="overlap_tokens")

    def to_dict(self) -> dict:
        return asdict(self)


TokenCounter = Callable[[list[str]], list[int]]


def tokenizer_counter(tokenizer) -> TokenCounter:
    """Batch token counts from a Hugging Face tokenizer (no special tokens)."""
    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return count


def approx_counter(texts: list[str]) -> list[int]:
    return [approx_token_count(t) for t in texts]


@dataclass
class Section:
    heading: str
    start: int
    end: int


_HEADING_RE = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")


def split_sections(text: str) -> list[Section]:
    """Markdown sections: the body under each heading, with its heading path."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    body_start = 0
    pos = 0
    in_fence = False

    def close(end: int) -> None:
        if text[body_start:end].strip():
            sections.append(Section(" > ".join(h for _, h in path), body_start, end))

    for line in text.splitlines(keepends=True):
        if _FENCE_RE.match(line):
            in_fence = not in_fence
        m = None if in_fence else _HEADING_RE.match(line.rstrip("\n"))
        if m:
            close(pos)
            level, title = len(m.group(1)), m.group(2).strip()
            path = [(lv, h) for lv, h in path if lv < level] + [(level, title)]
            body_start = pos + len(line)
        pos += len(line)
    close(len(text))
    return sections


def chunk_document(doc: Document, settings: ChunkerSettings, count: TokenCounter = approx_counter,
                   split_long: Callable[[str, int], list[int]] | None = None) -> list[Chunk]:
    """Chunks of one document. ``split_long(text, max_tokens)`` returns the char
    offsets where an over-long sentence is cut (token boundaries); without it,
    long sentences are cut by characters in proportion to their token count."""
    chunks: list[Chunk] = []
    for sec in _split_at_pages(split_sections(doc.text), doc.page_starts):
        spans = sentence_spans(doc.text, sec.start, sec.end)
        if not spans:
            continue
        counts = count([doc.text[a:b] for a, b in spans])
        units: list[tuple[int, int, int]] = []  # (start, end, tokens)
        for (a, b), n in zip(spans, counts):
            if n <= settings.chunk_tokens:
                units.append((a, b, n))
                continue
            limit = settings.chunk_tokens - settings.overlap_tokens
            cuts = split_long(doc.text[a:b], limit) if split_long else _proportional_cuts(b - a, n, limit)
            bounds = [a] + [a + c for c in cuts if 0 < c < b - a] + [b]
            for x, y in zip(bounds, bounds[1:]):
                units.append((x, y, min(limit, n)))
        for a, b in _pack(units, settings):
            if b - a < settings.min_chunk_chars:
                continue
            chunk_text = doc.text[a:b]
            chunks.append(Chunk(id=f"{doc.doc_id}:{len(chunks)}", doc_id=doc.doc_id, source=doc.source,
                                title=doc.title, heading=sec.heading, text=chunk_text, start=a, end=b,
                                page=doc.page_at(a), lang=detect_lang(chunk_text)))
    return chunks


def _split_at_pages(sections: list[Section], page_starts: list[int]) -> list[Section]:
    """PDF: no chunk crosses a page boundary, so each chunk has one page."""
    if len(page_starts) < 2:
        return sections
    out = []
    for sec in sections:
        cuts = [sec.start] + [p for p in page_starts if sec.start < p < sec.end] + [sec.end]
        out += [Section(sec.heading, a, b) for a, b in zip(cuts, cuts[1:])]
    return out


def _proportional_cuts(length: int, tokens: int, limit: int) -> list[int]:
    step = max(1, int(length * limit / max(tokens, 1)))
    return list(range(step, length, step))


def _pack(units: list[tuple[int, int, int]], s: ChunkerSettings) -> list[tuple[int, int]]:
    """Greedy packing of sentence units into spans of at most ``chunk_tokens``,
    each new span starting with up to ``overlap_tokens`` of the previous one's tail."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and (j == i or total + units[j][2] <= s.chunk_tokens):
            total += units[j][2]
            j += 1
        out.append((units[i][0], units[j - 1][1]))
        if j >= len(units):
            break
        # step back over the tail sentences that fit in the overlap, but always
        # advance, and leave room for the next new sentence (no chunk repeats another)
        k, tail = j, 0
        while (k - 1 > i and tail + units[k - 1][2] <= s.overlap_tokens
               and tail + units[k - 1][2] + units[j][2] <= s.chunk_tokens):
            tail += units[k - 1][2]
            k -= 1
        i = k
    return out


def token_splitter(tokenizer) -> Callable[[str, int], list[int]]:
    """Cut points every ``max_tokens`` tokens, from a fast tokenizer's offsets."""
    def split(text: str, max_tokens: int) -> list[int]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        return [offsets[i][0] for i in range(max_tokens, len(offsets), max_tokens)]
    return split


def embed_text(chunk: Chunk) -> str:
    """What is embedded and BM25-indexed: the heading path gives the chunk its context."""
    head = chunk.heading or chunk.title
    return f"{head}\n{chunk.text}" if head else chunk.text
