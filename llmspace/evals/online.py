"""Online traffic: what every shell's chat and RAG answers go through.

An answer a person asks for -- over HTTP, in the UI or on the command line --
is *online*: when the ``ab`` setting is on it is assigned an A/B arm (whose
settings, system prompt and retrieval options then apply), and it is recorded
under its response id with its variant (``feedback.record_response``), so
that feedback by id and ``ab report`` see all traffic, not only the API's. A
stream the client abandons is recorded too, partial, with the finish reason
``cancelled``, and logged. Offline work (eval runs) passes ``online=False``.

The library calls use this module (``chat.start_chat``/``chat_stream``/``chat``
and ``RagService.stream_answer``); shells only pass who is asking
(``user_key``) and, if they show it, a response id.
"""

from __future__ import annotations

import logging
import uuid
from typing import Iterator

log = logging.getLogger("llmspace.online")

CANCELLED = "cancelled"


def new_id(kind: str) -> str:
    return f"{'chatcmpl' if kind == 'chat' else kind}-{uuid.uuid4().hex[:24]}"


def client_key(user: str | None = None, authorization: str | None = None) -> str | None:
    """Who is asking, as an API shell (HTTP, gRPC) knows it, for A/B assignment and recorded
    answers: the end-user id if the request names one, else the bearer API key, else None."""
    if user:
        return f"user:{user}"
    auth = authorization or ""
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return f"key:{auth[7:].strip()}"
    return None


def choose_arm(services, user_key: str | None):
    """The A/B arm for ``user_key`` (``None`` when A/B is off). Serve with
    ``arm.services`` and ``arm.apply(messages)``; record ``arm.name``."""
    from llmspace.evals.ab import ab_router

    return ab_router(services).choose(user_key)


def rag_retrieval(arm, retrieval: dict) -> dict:
    """``RagService.stream_answer`` retrieval options with the arm's on top (the
    experiment wins over a shell's defaults; its ``mode`` is the retrieval mode)."""
    out = dict(retrieval)
    for key, value in (arm.retrieval if arm is not None else {}).items():
        out["retrieval_mode" if key == "mode" else key] = value
    return out


def record(services, *, response_id: str, kind: str, question, answer: str, usage=None,
           timings: dict | None = None, model: str | None = None, variant: str | None = None,
           user_key: str | None = None, index: str | None = None, citations: list | None = None,
           finish_reason: str | None = None) -> None:
    """Store one served answer. ``question`` may be the request's messages (the
    last user message is kept). Never raises: a full disk must not fail the
    user's request."""
    from llmspace.evals.config import EvalConfig
    from llmspace.evals.feedback import record_response

    t = timings or {}
    try:
        if not isinstance(question, str):
            question = last_user_text(question)
        pt = getattr(usage, "prompt_tokens", None)
        ct = getattr(usage, "completion_tokens", None)
        cost = EvalConfig.from_settings(services.settings).case_cost(pt or 0, ct or 0, t.get("total_s"))
        cited = [{"n": c.n, "chunk_id": c.chunk_id, "source": c.source, "valid": c.valid} for c in citations or []]
        record_response(services.settings.db_path, id=response_id, kind=kind, question=question, answer=answer,
                        model=model, variant=variant, user_key=user_key, index=index,
                        cited=cited if citations else None, prompt_tokens=pt, completion_tokens=ct,
                        ttft_s=t.get("ttft_s"), total_s=t.get("total_s"), cost_usd=cost,
                        finish_reason=finish_reason, max_rows=services.settings.responses_max_rows,
                        max_days=services.settings.responses_max_days)
    except Exception:  # pragma: no cover - logged, not raised
        log.exception("could not record response %s", response_id)


def last_user_text(messages: list) -> str:
    for m in reversed(messages):
        role = m.get("role") if isinstance(m, dict) else getattr(m, "role", None)
        if role == "user":
            content = m.get("content") if isinstance(m, dict) else getattr(m, "content", "")
            if isinstance(content, list):
                content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
            return str(content)
    return ""


def cancelled(kind: str, response_id: str, chars: int) -> None:
    log.info("%s response %s cancelled: the client went away after %d characters (recorded as partial)",
             kind, response_id, chars)


class RecordedAnswer:
    """A RAG answer stream (text pieces, then the ``Answer``) that records itself
    when it ends: whole when the ``Answer`` came, partial (``cancelled``) when the
    consumer stopped early. ``id`` and ``variant`` are known before the first item."""

    def __init__(self, services, stream: Iterator, *, question: str, index: str, arm, user_key: str | None,
                 response_id: str | None, model: str | None):
        self.services, self.id = services, response_id or new_id("rag")
        self.variant = arm.name if arm is not None else None
        self._meta = {"question": question, "index": index, "user_key": user_key, "model": model}
        self._gen = self._run(stream)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()

    def _run(self, stream: Iterator):
        parts, final, ended = [], None, CANCELLED
        try:
            for item in stream:
                if isinstance(item, str):
                    parts.append(item)
                else:
                    final = item
                yield item
        except (GeneratorExit, KeyboardInterrupt):  # the consumer went away (or Ctrl-C)
            raise
        except BaseException:
            ended = "error"
            raise
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            m = self._meta
            if final is not None:
                record(self.services, response_id=self.id, kind="rag", question=m["question"], answer=final.text,
                       usage=getattr(final, "usage", None), timings=getattr(final, "timings", None),
                       model=m["model"], variant=self.variant, user_key=m["user_key"], index=m["index"],
                       citations=getattr(final, "citations", None),
                       finish_reason=getattr(final, "finish_reason", None) or "stop")
            else:
                text = "".join(parts)
                if ended == CANCELLED:
                    cancelled("rag", self.id, len(text))
                record(self.services, response_id=self.id, kind="rag", question=m["question"], answer=text,
                       model=m["model"], variant=self.variant, user_key=m["user_key"], index=m["index"],
                       finish_reason=ended)
