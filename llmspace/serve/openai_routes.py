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

from llmspace.chat import check_model_name, start_chat
from llmspace.engine.base import GenerationParams
from llmspace.errors import ModelNotFoundError, ValidationError
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
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    return GenerationParams(
        max_new_tokens=default_max if max_tokens is None else max_tokens,
        # Greedy unless asked: small models answer best that way, and it makes
        # answers reproducible. (OpenAI's default is 1.0.)
        temperature=0.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        seed=req.seed,
        stop=stop,
    )


@router.get("/models")
def list_models(request: Request):
    s = _services(request)
    now = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": s.engine.model_id, "object": "model", "created": now, "owned_by": "llmspace",
             "llmspace": {"kind": "chat", "backend": s.engine.backend}},
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
            for d in turn.stream():
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

    def events():
        yield chunk({"role": "assistant", "content": ""})
        for d in turn.stream():
            if d.text:
                yield chunk({"content": d.text})
            if d.finish_reason is not None:
                yield chunk({}, d.finish_reason, llmspace={"timings": d.timings, "variant": variant})
                if include_usage:
                    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                            "choices": [], "usage": d.usage.to_dict()}
                    yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"

    from llmspace.serve.streams import EventStream

    # EventStream closes events() when the client goes away: the answer is recorded as "cancelled" at once
    return EventStream(events(), headers={"X-LLMSpace-Variant": variant} if variant else None)


@router.post("/embeddings")
async def embeddings(req: EmbeddingRequest, request: Request):
    services = _services(request)
    emb = services.embedder
    if req.model:
        from llmspace import models

        asked, served = models.lookup(req.model), models.lookup(emb.name)  # None: not a registry name
        if req.model != emb.name and not (asked and served and asked.name == served.name):
            raise ModelNotFoundError(f"The embedding model {req.model!r} is not served here; this server serves "
                                     f"{emb.name!r} (GET /v1/models lists it).")
    texts = [req.input] if isinstance(req.input, str) else req.input
    limits = services.settings
    if not texts:
        raise ValidationError("`input` is empty.", param="input")
    if len(texts) > limits.embedding_max_inputs:
        raise ValidationError(f"`input` has {len(texts)} items; the limit is {limits.embedding_max_inputs} "
                              "(LLMSPACE_EMBEDDING_MAX_INPUTS). Send them in several requests.", param="input")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValidationError(f"input[{i}] must be a string (token arrays are not supported).",
                                  param=f"input[{i}]")
        if not t.strip():
            raise ValidationError(f"input[{i}] is empty.", param=f"input[{i}]")
        if len(t) > limits.embedding_max_input_chars:
            raise ValidationError(f"input[{i}] has {len(t)} characters; the limit is "
                                  f"{limits.embedding_max_input_chars} (LLMSPACE_EMBEDDING_MAX_INPUT_CHARS). "
                                  "Split the text into chunks first.", param=f"input[{i}]")
    vecs = await run_in_threadpool(emb.embed, texts)
    if req.dimensions is not None and req.dimensions != vecs.shape[1]:
        raise ValidationError(f"This model gives {vecs.shape[1]} dimensions; `dimensions` cannot change that.",
                              param="dimensions")
    n_tokens = sum(emb.count_tokens(t) for t in texts)
    services.metrics.embedding_inputs.labels(emb.name).inc(len(texts))
    data = []
    for i, v in enumerate(vecs):
        if req.encoding_format == "base64":
            import base64

            value: Any = base64.b64encode(v.astype("<f4").tobytes()).decode()
        else:
            value = v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": emb.name,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}
