"""OpenAI-compatible routes: /v1/chat/completions, /v1/models, /v1/embeddings.

Shapes follow the OpenAI API so the official ``openai`` SDK works unchanged.
Extension fields (``top_k``, and ``llmspace`` timings in responses) are
additive; SDKs ignore what they do not know.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from llmspace.chat import check_model_name, request_params, start_chat
from llmspace.engine.base import GenerationParams
from llmspace.errors import LLMSpaceError, ValidationError
from llmspace.serve.eval_routes import user_key

router = APIRouter(prefix="/v1")


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    # extra="ignore": SDKs send fields we do not use (logprobs=None, ...);
    # fields we cannot honour are checked explicitly below.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Any]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    user: str | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, examples=["all-minilm-l6-v2"])
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


def _services(request: Request):
    return request.app.state.services


def _params(req: ChatRequest, default_max: int | None) -> GenerationParams:
    if req.n not in (None, 1):
        raise ValidationError("Only n=1 is supported.", param="n")
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    stop = [req.stop] if isinstance(req.stop, str) else req.stop
    return request_params(max_tokens=default_max if max_tokens is None else max_tokens, temperature=req.temperature,
                          top_p=req.top_p, top_k=req.top_k, seed=req.seed, stop=stop)


@router.get("/models")
def list_models(request: Request):
    s = _services(request)
    now = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": s.engine.model_id, "object": "model", "created": now, "owned_by": "llmspace",
             "llmspace": {"kind": "chat", "backend": s.engine.backend, "context_window": s.engine.context_window}},
            {"id": s.embedder.name, "object": "model", "created": now, "owned_by": "llmspace",
             "llmspace": {"kind": "embedding"}},
        ],
    }


@router.post("/chat/completions")
async def chat_completions(req: ChatRequest, request: Request):
    services = _services(request)
    check_model_name(services, req.model)
    params = _params(req, None)  # None: the default_max_tokens of the A/B arm that answers
    # the library assigns the A/B arm and records the answer under `cid` (a stream the client drops: "cancelled")
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    turn = await run_in_threadpool(lambda: start_chat(services, req.messages, params,
                                                      user_key=user_key(request, req.user), response_id=cid))
    created = int(time.time())
    model = turn.model
    variant = turn.variant

    if not req.stream:
        def run():
            parts, last = [], None
            for d in turn.stream():  # a full queue raises ServerBusyError: 503 + Retry-After
                parts.append(d.text)
                last = d
            return "".join(parts), last

        text, last = await run_in_threadpool(run)
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": last.finish_reason, "logprobs": None}],
            "usage": last.usage.to_dict(),
            "llmspace": {"timings": last.timings, "variant": variant},
        }

    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    # queued now: a full queue answers 503 + Retry-After here, before the stream starts
    deltas = await run_in_threadpool(turn.stream)

    def events():
        try:
            yield chunk({"role": "assistant", "content": ""})
            yield from body(deltas)
        except LLMSpaceError as exc:  # after the 200: the error travels as an event the SDK raises
            yield f"data: {json.dumps(exc.to_openai(), ensure_ascii=False)}\n\n"
            return
        finally:  # however it ends (a client that left): the request leaves the engine, the turn is recorded
            deltas.close()
        yield "data: [DONE]\n\n"

    def body(deltas):
        for d in deltas:
            if d.waiting:  # still queued: an SSE comment keeps proxies and clients from timing out
                yield ": waiting for the model\n\n"
                continue
            if d.text:
                yield chunk({"content": d.text})
            if d.finish_reason is not None:
                yield chunk({}, d.finish_reason, llmspace={"timings": d.timings, "variant": variant})
                if include_usage:
                    usage_body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                  "choices": [], "usage": d.usage.to_dict()}
                    yield f"data: {json.dumps(usage_body)}\n\n"

    from llmspace.serve.streams import EventStream

    # EventStream closes events() when the client goes away: the answer is recorded as "cancelled" at once
    return EventStream(events(), headers={"X-LLMSpace-Variant": variant} if variant else None)


@router.post("/embeddings")
async def embeddings(req: EmbeddingRequest, request: Request):
    from llmspace.embeddings import embed_request

    # the model name, the bounds, metrics: the library call every shell makes (gRPC Embed too)
    result = await run_in_threadpool(embed_request, _services(request), req.input, req.model)
    vecs, n_tokens = result.vectors, result.prompt_tokens
    if req.dimensions is not None and req.dimensions != vecs.shape[1]:
        raise ValidationError(f"This model gives {vecs.shape[1]} dimensions; `dimensions` cannot change that.",
                              param="dimensions")
    data = []
    for i, v in enumerate(vecs):
        if req.encoding_format == "base64":
            import base64

            value: Any = base64.b64encode(v.astype("<f4").tobytes()).decode()
        else:
            value = v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": result.model,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}
