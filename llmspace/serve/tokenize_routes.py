"""``POST /tokenize``: how many tokens a prompt is, in vLLM's request and response shape.

vLLM serves ``/tokenize`` beside ``/v1``; llmspace answers the same request, so a
front llmspace (``backend=remote``, ``llmspace.engine.remote_engine``) counts a
prompt exactly, with the served model's own chat template, before it sends it:
the context check and the RAG source budget use the count.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from llmspace.chat import check_model_name
from llmspace.engine.base import validate_messages
from llmspace.errors import ValidationError

router = APIRouter(tags=["tokenize"])


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # vLLM's other fields (return_token_strs, tools...) are not used

    model: str | None = None
    messages: list[Any] | None = None
    prompt: str | None = None
    add_generation_prompt: bool = True
    add_special_tokens: bool = True


@router.post("/tokenize")
async def tokenize(req: TokenizeRequest, request: Request):
    """``{"count", "max_model_len", "tokens"}`` for ``messages`` (with the chat template and the
    assistant's opening, as the model will see them) or a bare ``prompt``. ``tokens`` is left out
    when this server's backend is itself remote (it can count, not list)."""
    services = request.app.state.services
    return await run_in_threadpool(_tokenize, services, req)


def _tokenize(services, req: TokenizeRequest) -> dict:
    check_model_name(services, req.model)
    if (req.messages is None) == (req.prompt is None):
        raise ValidationError("Send either `messages` (a chat, counted with the model's chat template) or `prompt` "
                              "(a bare text).", param="messages")
    limit = services.settings.max_request_chars
    engine = services.engine.load()
    tokens = None
    if req.messages is not None:
        if not req.add_generation_prompt:
            raise ValidationError("Only add_generation_prompt=true is supported: the count is of the prompt the "
                                  "model answers.", param="add_generation_prompt")
        msgs = validate_messages(req.messages, max_chars=limit)
        if hasattr(engine, "encode_prompt"):
            tokens = list(engine.encode_prompt(msgs))
        count = len(tokens) if tokens is not None else engine.count_prompt_tokens(msgs)
    else:
        if len(req.prompt) > limit:
            raise ValidationError(f"`prompt` has {len(req.prompt)} characters; the limit is {limit}.", param="prompt")
        if engine.backend == "remote":
            count = engine.count_tokens(req.prompt)
        else:
            tokens = list(engine.tokenizer(req.prompt, add_special_tokens=req.add_special_tokens)["input_ids"])
            count = len(tokens)
    out: dict = {"count": count, "max_model_len": engine.context_window}
    if tokens is not None:
        out["tokens"] = tokens
    return out
