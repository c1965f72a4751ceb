"""Chat as a library call: validate, check the context window, stream, measure.

The CLI, the HTTP API and the Gradio UI all call ``chat_stream`` (or
``start_chat`` then ``turn.stream()``); none of them holds chat logic of its
own. Chats are *online* by default: assigned an A/B arm when the ``ab`` setting
is on and recorded with their response id (``llmspace.evals.online``), a
stream the client abandons as ``cancelled``; eval runs pass ``online=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from llmspace.engine.base import Completion, Delta, GenerationParams, Message, validate_messages, validate_params
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


def request_params(*, max_tokens: int | None = None, temperature: float | None = None, top_p: float | None = None,
                   top_k: int | None = None, seed: int | None = None, stop: list[str] | None = None) -> GenerationParams:
    """A request's sampling fields (HTTP API, gRPC) with the API's defaults for those it leaves out.
    ``max_tokens=None`` stays None: ``start_chat`` then uses the answering A/B arm's ``default_max_tokens``."""
    return GenerationParams(
        max_new_tokens=max_tokens,
        # Greedy unless asked: small models answer best that way, and it makes
        # answers reproducible. (OpenAI's default is 1.0.)
        temperature=0.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        top_k=top_k or 0,
        seed=seed,
        stop=list(stop or []),
    )


class ChatTurn:
    """One prepared chat answer: its ``id``, A/B ``variant`` and ``model`` are
    known before the first token; ``stream()`` generates it (once)."""

    def __init__(self, services, messages: list[Message], params: GenerationParams, *, question,
                 arm=None, user_key: str | None = None, online: bool = True, response_id: str | None = None):
        from llmspace.evals.online import new_id

        self.services = services  # the arm's view when A/B is on
        self.messages, self.params, self.question = messages, params, question
        self.arm, self.user_key, self.online = arm, user_key, online
        self.id = response_id or new_id("chat")
        self.variant = arm.name if arm is not None else None
        self.model = services.engine.model_id

    def stream(self) -> Iterator[Delta]:
        """Deltas; the last one carries finish_reason, usage and timings. The
        request is queued for the engine now: a full queue raises
        ``ServerBusyError`` from this call, before any delta. An online turn is
        recorded when it ends, as ``cancelled`` when the consumer stops before
        the last delta (a client that went away)."""
        engine = self.services.engine
        deltas = self.services.metrics.track(engine.model_id, engine.stream(self.messages, self.params))
        return deltas if not self.online else self._recorded(deltas)

    def _recorded(self, deltas) -> Iterator[Delta]:
        from llmspace.evals import online

        parts, last, ended = [], None, online.CANCELLED
        try:
            for d in deltas:
                parts.append(d.text)
                if d.finish_reason is not None:
                    last = d
                yield d
        except (GeneratorExit, KeyboardInterrupt):  # the consumer went away (or Ctrl-C)
            raise
        except BaseException:
            ended = "error"
            raise
        finally:
            deltas.close()  # the engine's stream ends (and frees the model) before the database write
            text = "".join(parts)
            if last is None and ended == online.CANCELLED:
                online.cancelled("chat", self.id, len(text))
            online.record(self.services, response_id=self.id, kind="chat", question=self.question, answer=text,
                          usage=last.usage if last else None, timings=last.timings if last else None,
                          model=self.model, variant=self.variant, user_key=self.user_key,
                          finish_reason=last.finish_reason if last else ended)


def start_chat(services, messages: list[Message | dict], params: GenerationParams, *,
               user_key: str | None = None, online: bool = True, response_id: str | None = None) -> ChatTurn:
    """Everything before the first token: the A/B arm (for ``user_key``; random
    when None), validation, the context check. Raises ``LLMSpaceError``.
    ``params.max_new_tokens=None`` means the (arm's) ``default_max_tokens``."""
    arm = None
    if online:
        from llmspace.evals.online import choose_arm

        arm = choose_arm(services, user_key)
    svc = arm.services if arm is not None else services
    if params.max_new_tokens is None:
        from dataclasses import replace

        params = replace(params, max_new_tokens=svc.settings.default_max_tokens)
    msgs = prepare(svc, arm.apply(messages) if arm is not None else messages, params)
    return ChatTurn(svc, msgs, params, question=messages, arm=arm, user_key=user_key, online=online,
                    response_id=response_id)


def chat_stream(services, messages: list[Message | dict], params: GenerationParams,
                prepared: bool = False, *, user_key: str | None = None, online: bool = True,
                response_id: str | None = None) -> Iterator[Delta]:
    """Stream deltas; the last one carries finish_reason, usage and timings.
    ``prepared``: ``messages`` come from ``prepare(services, ...)`` (no A/B arm then)."""
    if prepared:
        turn = ChatTurn(services, messages, params, question=messages, user_key=user_key, online=online,
                        response_id=response_id)
    else:
        turn = start_chat(services, messages, params, user_key=user_key, online=online, response_id=response_id)
    yield from turn.stream()


@dataclass
class ChatCompletion(Completion):
    """A ``Completion`` with the response id it was recorded under and its A/B variant."""

    id: str | None = None
    variant: str | None = None


def chat(services, messages: list[Message | dict], params: GenerationParams, *, user_key: str | None = None,
         online: bool = True) -> ChatCompletion:
    """One whole answer as a ``Completion`` (with ``id`` and ``variant``)."""
    from llmspace.engine.base import Usage

    turn = start_chat(services, messages, params, user_key=user_key, online=online)
    parts, last = [], None
    for d in turn.stream():
        parts.append(d.text)
        last = d
    return ChatCompletion("".join(parts), last.finish_reason, last.usage or Usage(), turn.model,
                          last.timings or {}, id=turn.id, variant=turn.variant)
