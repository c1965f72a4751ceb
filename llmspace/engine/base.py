"""The engine protocol: chat messages in, a token stream out.

Every backend (PyTorch, ONNX Runtime, a remote OpenAI-compatible server)
implements ``Engine``; the CLI, API, UI, RAG and evals use only this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterator, Protocol, runtime_checkable

from llmspace.errors import ValidationError

ROLES = ("system", "user", "assistant", "tool")
FINISH_REASONS = ("stop", "length", "timeout", "cancelled")


@dataclass
class Message:
    role: str
    content: str

    def to_dict(self) -> dict:
        return {"role": self.role, "content": self.content}


@dataclass
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means off
    seed: int | None = None
    stop: list[str] = field(default_factory=list)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass
class Delta:
    """One step of a stream. ``text`` is new text (may be empty); the last delta
    has ``finish_reason`` and ``usage`` set."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    timings: dict | None = None  # on the last delta: queue_s, ttft_s, total_s, tokens_per_s
    # True on an empty delta sent while the request still waits for the engine: a stream can
    # keep its connection alive (an SSE comment) and a reader may ignore it
    waiting: bool = False


@dataclass
class Completion:
    text: str
    finish_reason: str
    usage: Usage
    model: str
    timings: dict = field(default_factory=dict)  # ttft_s, total_s, tokens_per_s

    def to_dict(self) -> dict:
        d = asdict(self)
        d["usage"] = self.usage.to_dict()
        return d


@runtime_checkable
class Engine(Protocol):
    model_id: str
    backend: str
    context_window: int

    def count_prompt_tokens(self, messages: list[Message]) -> int: ...

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[Delta]: ...


def complete(engine: Engine, messages: list[Message], params: GenerationParams) -> Completion:
    """Run a stream to the end and gather it into one ``Completion``."""
    parts: list[str] = []
    last: Delta | None = None
    for delta in engine.stream(messages, params):
        parts.append(delta.text)
        last = delta
    assert last is not None and last.finish_reason is not None, "engine stream ended without a final delta"
    return Completion("".join(parts), last.finish_reason, last.usage or Usage(), engine.model_id, last.timings or {})


def validate_messages(messages: list[Message | dict], max_chars: int | None = None) -> list[Message]:
    """Check roles and contents; return ``Message`` objects. Errors name the field."""
    if not isinstance(messages, list) or not messages:
        raise ValidationError("`messages` must be a non-empty list of {role, content} objects.", param="messages")
    out: list[Message] = []
    total = 0
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            role, content = m.role, m.content
        elif isinstance(m, dict):
            role, content = m.get("role"), m.get("content")
        else:
            raise ValidationError(f"messages[{i}] must be an object with role and content.", param=f"messages[{i}]")
        if role not in ROLES:
            raise ValidationError(f"messages[{i}].role is {role!r}; expected one of {', '.join(ROLES)}.",
                                  param=f"messages[{i}].role")
        if isinstance(content, list):  # OpenAI / Gradio content blocks
            content = "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
        if not isinstance(content, str) or not content.strip():
            raise ValidationError(f"messages[{i}].content is empty.", param=f"messages[{i}].content")
        total += len(content)
        out.append(Message(role, content))
    if max_chars is not None and total > max_chars:
        raise ValidationError(f"The messages hold {total} characters; the limit is {max_chars}.", param="messages")
    if out[-1].role == "assistant" and len(out) == 1:
        raise ValidationError("The conversation has only an assistant message; add a user message.", param="messages")
    return out


def validate_params(params: GenerationParams, max_tokens_limit: int) -> GenerationParams:
    if not isinstance(params.max_new_tokens, int) or params.max_new_tokens <= 0:
        raise ValidationError(f"max_tokens must be a positive integer; got {params.max_new_tokens}.", param="max_tokens")
    if params.max_new_tokens > max_tokens_limit:
        raise ValidationError(f"max_tokens is {params.max_new_tokens}; the limit is {max_tokens_limit}.",
                              param="max_tokens")
    if params.temperature < 0 or params.temperature > 2:
        raise ValidationError(f"temperature must be between 0 and 2; got {params.temperature}.", param="temperature")
    if not 0 < params.top_p <= 1:
        raise ValidationError(f"top_p must be in (0, 1]; got {params.top_p}.", param="top_p")
    if params.top_k < 0:
        raise ValidationError(f"top_k must be >= 0; got {params.top_k}.", param="top_k")
    if len(params.stop) > 8 or any(not isinstance(s, str) or not s for s in params.stop):
        raise ValidationError("stop must be up to 8 non-empty strings.", param="stop")
    return params
