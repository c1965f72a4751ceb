"""What a system under test returns for one case, and what the runner records.

``SystemOutput`` is the bridge between the runner and whatever answers: plain
chat through an engine, ``services.rag.answer`` (see ``from_answer``), or a
hand-made fake in tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SourceRef:
    """A retrieved or cited piece of a document."""

    chunk_id: str
    source: str
    n: int | None = None  # the [n] in the answer, for citations
    valid: bool = True  # False: the answer cited [n] that was not among the sources
    origin: str = "model"  # "model" | "attached" (by llmspace) | "extractive" (a quoted sentence)

    def matches(self, gold: str) -> bool:
        """``gold`` names this chunk: its id, its document's source path, or a path suffix of it."""
        src = self.source.replace("\\", "/")
        return gold in (self.chunk_id, src) or src.endswith("/" + gold.lstrip("/")) or (
            self.chunk_id.startswith(gold + ":"))


@dataclass
class SystemOutput:
    text: str
    retrieved: list[SourceRef] = field(default_factory=list)  # in rank order
    cited: list[SourceRef] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    total_s: float | None = None
    retrieve_s: float | None = None
    mode: str = "generate"  # chat: "chat"; RAG: the Answer's mode
    model: str | None = None
    source_texts: list[str] = field(default_factory=list)  # what the model was given (for the judge)
    # the support check's verdict on the model's own answer (None: nothing generated was checked);
    # False means the shown answer is the extractive fallback
    supported: bool | None = None


def from_answer(answer) -> SystemOutput:
    """Turn a ``llmspace.rag.types.Answer`` into a ``SystemOutput``."""
    retrieved = [SourceRef(h.chunk.id, h.chunk.source) for h in answer.sources]
    cited = [SourceRef(c.chunk_id, c.source, n=c.n, valid=c.valid, origin=c.origin) for c in answer.citations]
    known = {c.n for c in cited}
    cited += [SourceRef("", "", n=n, valid=False) for n in answer.invalid_citations if n not in known]
    t = answer.timings or {}
    return SystemOutput(
        text=answer.text, retrieved=retrieved, cited=cited,
        prompt_tokens=answer.usage.prompt_tokens, completion_tokens=answer.usage.completion_tokens,
        ttft_s=t.get("ttft_s"), total_s=t.get("total_s"), retrieve_s=t.get("retrieve_s"), mode=answer.mode,
        source_texts=[h.chunk.text for h in answer.sources],
        supported=None if answer.support is None else bool(answer.support.get("supported")))


@dataclass
class AssertionResult:
    type: str
    value: object
    passed: bool
    detail: str = ""


@dataclass
class CaseResult:
    case_id: str
    kind: str  # "chat" | "rag"
    question: str
    tags: list[str]
    gold_sources: list[str]
    output: str = ""
    retrieved: list[dict] = field(default_factory=list)  # SourceRef dicts
    cited: list[dict] = field(default_factory=list)
    assertions: list[AssertionResult] = field(default_factory=list)
    passed: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    total_s: float | None = None
    cost_usd: float | None = None
    mode: str | None = None
    error: str | None = None
    judge: dict | None = None  # {"model", "faithfulness" in [0,1], "raw"}; only with --judge
    supported: bool | None = None  # the support check's verdict on the generated answer (see SystemOutput)

    # ---- derived views used by metrics and reports ----
    @property
    def valid_cited(self) -> list[dict]:
        return [c for c in self.cited if c.get("valid")]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CaseResult":
        d = dict(d)
        d["assertions"] = [AssertionResult(**a) for a in d.get("assertions", [])]
        return cls(**d)
