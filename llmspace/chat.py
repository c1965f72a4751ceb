"""Chat as a library call: validate, check the context window, stream, measure.

The CLI, the HTTP API and the Gradio UI all call ``chat_stream``; none of them
holds chat logic of its own.
"""

from __future__ import annotations

from typing import Iterator

from llmspace.engine.base import Delta, GenerationParams, Message, validate_messages, validate_params
from llmspace.engine.common import check_context
from llmspace.errors import ModelNotFoundError


def check_model_name(services, name: str | None) -> None:
    """Accept the served chat model's id, its registry aliases, or nothing."""
    if name is None or name == "":
        return
    from llmspace import models

    served = services.engine.model_id
    spec = models.lookup(served)
    names = {served.lower()} | ({spec.name, *(a.lower() for a in spec.aliases)} if spec else set())
    if name.lower() not in names:
        raise ModelNotFoundError(
            f"The model {name!r} is not served here. This server serves {served!r} (GET /v1/models lists it); "
            f"start it with LLMSPACE_CHAT_MODEL={name} to serve another."
        )


def prepare(services, messages: list[Message | dict], params: GenerationParams) -> list[Message]:
    """Everything that can fail before the first token: raises ``LLMSpaceError``."""
    s = services.settings
    msgs = validate_messages(messages, max_chars=s.max_request_chars)
    validate_params(params, s.max_tokens_limit)
    engine = services.engine
    engine.load()
    check_context(engine.count_prompt_tokens(msgs), params.max_new_tokens, engine.context_window)
    return msgs


def chat_stream(services, messages: list[Message | dict], params: GenerationParams,
                prepared: bool = False) -> Iterator[Delta]:
    """Stream deltas; the last one carries finish_reason, usage and timings."""
    msgs = messages if prepared else prepare(services, messages, params)
    engine = services.engine
    yield from services.metrics.track(engine.model_id, engine.stream(msgs, params))


def chat(services, messages: list[Message | dict], params: GenerationParams):
    """One whole answer as a ``Completion``."""
    from llmspace.engine.base import Completion, Usage

    parts, last = [], None
    for d in chat_stream(services, messages, params):
        parts.append(d.text)
        last = d
    return Completion("".join(parts), last.finish_reason, last.usage or Usage(), services.engine.model_id,
                      last.timings or {})
