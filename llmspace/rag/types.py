"""Value objects shared by RAG, the shells (CLI, API, UI), logs and evals."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from llmspace.engine.base import Usage


@dataclass
class Chunk:
    id: str  # stable: "<doc_id>:<n>"
    doc_id: str
    source: str  # path relative to the indexed root (or the upload name)
    title: str  # document title
    heading: str  # heading path, "Chapter > Section"
    text: str
    start: int  # character span in the source document
    end: int
    page: int | None = None  # PDF page (1-based)
    lang: str = "en"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchHit:
    chunk: Chunk
    score: float
    rank: int
    scores: dict = field(default_factory=dict)  # per retriever: {"dense": .., "bm25": .., "rerank": ..}

    def to_dict(self) -> dict:
        return {"rank": self.rank, "score": self.score, "scores": self.scores, **self.chunk.to_dict()}


@dataclass
class Citation:
    n: int  # the [n] used in the answer
    chunk_id: str
    source: str
    heading: str
    start: int
    end: int
    snippet: str
    score: float
    valid: bool = True  # False: the model cited [n] that was not among the sources
    # who put this citation there: "model" (the model wrote [n]), "attached" (the model cited
    # nothing; llmspace attached the source its check found supporting the answer) or "extractive"
    # (the answer is a quoted sentence; the citation says where it was quoted from)
    origin: str = "model"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Answer:
    question: str
    text: str
    citations: list[Citation]
    sources: list[SearchHit]  # what the model was given, numbered from 1
    invalid_citations: list[int] = field(default_factory=list)
    mode: str = "generate"  # "generate" | "extractive" | "no_answer"
    usage: Usage = field(default_factory=Usage)
    timings: dict = field(default_factory=dict)  # retrieve_s, ttft_s, total_s
    notes: list[str] = field(default_factory=list)  # e.g. "3 sources trimmed to fit the context"
    # the support check of a generated answer (``rag.support``): supported, reasons, evidence
    support: dict | None = None

    @property
    def cited_valid(self) -> bool:
        return any(c.valid for c in self.citations)

    @property
    def cited_by_model(self) -> bool:
        """The model itself wrote a valid citation (not one llmspace attached or quoted)."""
        return any(c.valid and c.origin == "model" for c in self.citations)

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.text,
            "mode": self.mode,
            "citations": [c.to_dict() for c in self.citations],
            "invalid_citations": self.invalid_citations,
            "sources": [h.to_dict() for h in self.sources],
            "usage": self.usage.to_dict(),
            "timings": self.timings,
            "notes": self.notes,
            "support": self.support,
        }
