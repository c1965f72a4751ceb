"""RAG routes: retrieval, grounded answers with citations, index management.

* ``POST /v1/rag/search`` — chunks with scores.
* ``POST /v1/rag/answer`` — answer, citations (n, chunk_id, source, heading,
  span, snippet, score, valid), sources, usage, timings, notes; ``"stream":
  true`` sends server-sent events ``{"type": "delta", "text"}`` then
  ``{"type": "answer", ...}`` then ``[DONE]``.
* ``GET /v1/rag/indexes``, ``GET|DELETE /v1/rag/indexes/{name}``,
  ``POST /v1/rag/indexes/{name}`` (multipart upload of files to index),
  ``GET /v1/rag/indexes/{name}/chunks/{chunk_id}`` (the passage in context).
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from llmspace.rag.ingest import MAX_UPLOAD_FILES

router = APIRouter(prefix="/v1/rag", tags=["rag"])


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., description="The question or search text.")
    index: str | None = Field(None, description="Index name (default: the `default_index` setting).")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    top_k: int = Field(5, ge=1, le=100)
    score_threshold: float | None = None
    mmr_lambda: float | None = Field(None, ge=0, le=1)


class AnswerRequest(SearchRequest):
    query: str | None = None  # type: ignore[assignment]
    question: str | None = Field(None, description="The question (alias: query).")
    answer_mode: Literal["auto", "generate", "extractive"] = Field("auto", description=(
        "auto: generate when the chat model handles the question's language, else extractive."))
    max_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    user: str | None = Field(None, max_length=200)


def _services(request: Request):
    return request.app.state.services


def _retrieval(req: SearchRequest) -> dict:
    return {"mode": req.mode, "top_k": req.top_k, "score_threshold": req.score_threshold,
            "mmr_lambda": req.mmr_lambda}


@router.post("/search")
async def search(req: SearchRequest, request: Request):
    services = _services(request)
    hits = await run_in_threadpool(services.rag.search, req.query, req.index, **_retrieval(req))
    return {"object": "rag.search", "index": req.index or services.settings.default_index, "query": req.query,
            "hits": [h.to_dict() for h in hits]}


def _answer_body(answer, rid: str, index: str) -> dict:
    return {"id": rid, "object": "rag.answer", "index": index, **answer.to_dict()}


@router.post("/answer")
async def rag_answer(req: AnswerRequest, request: Request):
    from llmspace.errors import ValidationError

    services = _services(request)
    question = req.question or req.query
    if not question:
        raise ValidationError("`question` is required.", param="question")
    index = req.index or services.settings.default_index
    max_tokens = req.max_tokens or services.settings.default_max_tokens
    if max_tokens > services.settings.max_tokens_limit:
        raise ValidationError(f"max_tokens is {max_tokens}; the limit is {services.settings.max_tokens_limit}.",
                              param="max_tokens")
    rid = f"rag-{uuid.uuid4().hex[:24]}"
    retrieval = _retrieval(req)
    retrieval["retrieval_mode"] = retrieval.pop("mode")
    from llmspace.serve.eval_routes import user_key

    # the library assigns the A/B arm and records the answer under `rid` (a stream the client drops: "cancelled")
    stream = services.rag.stream_answer(question, index, mode=req.answer_mode, max_tokens=max_tokens,
                                        user_key=user_key(request, req.user), response_id=rid, **retrieval)
    first = await run_in_threadpool(next, stream)  # errors (bad question, missing index) surface as HTTP errors

    if not req.stream:
        def run():
            final = first
            for item in stream:
                final = item
            return final

        answer = await run_in_threadpool(run)
        return _answer_body(answer, rid, index)

    def events():
        # chain, not a list: each event goes out as soon as the engine yields it
        for item in itertools.chain([first], stream):
            if item == "":  # still waiting for the model: an SSE comment keeps the connection
                yield ": waiting for the model\n\n"
                continue
            if isinstance(item, str):
                body = {"type": "delta", "id": rid, "text": item}
            else:
                body = {"type": "answer", **_answer_body(item, rid, index)}
            yield f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    from llmspace.serve.streams import EventStream

    return EventStream(events())  # closed when the client goes away: the answer is recorded as "cancelled"


@router.get("/indexes")
async def list_indexes(request: Request):
    return {"object": "list", "data": _services(request).rag.list()}


@router.get("/indexes/{name}")
async def index_info(name: str, request: Request):
    return await run_in_threadpool(_services(request).rag.info, name)


@router.delete("/indexes/{name}")
async def delete_index(name: str, request: Request):
    await run_in_threadpool(_services(request).rag.delete, name)
    return {"deleted": name}


def _upload_body(max_files: int) -> dict:
    """The multipart body, documented by hand: the route parses it itself, with limits."""
    files = {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1, "maxItems": max_files}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["files"], "properties": {"files": files}}}}}}


MAX_FORM_FIELDS = 20
MAX_FORM_FIELD_BYTES = 64 * 1024


@router.post("/indexes/{name}", openapi_extra=_upload_body(MAX_UPLOAD_FILES))
async def upload_index(name: str, request: Request):
    """Build (or rebuild) index ``name`` from uploaded files (multipart field ``files``); names with
    paths are refused. The form is parsed with limits: the file past ``MAX_UPLOAD_FILES`` is refused
    on its headers, before its bytes are read."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException

    from llmspace.errors import ValidationError
    from llmspace.rag.ingest import MAX_FILE_BYTES

    services = _services(request)
    try:
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=MAX_FORM_FIELDS,
                                  max_part_size=MAX_FORM_FIELD_BYTES)
    except HTTPException as exc:  # Starlette's parser limits (too many files or fields, a bad body)
        raise ValidationError(f"The upload was refused: {exc.detail} Send at most {MAX_UPLOAD_FILES} files, "
                              "as multipart form field `files`.", param="files") from None
    try:
        files = form.getlist("files")
        if not files or not all(isinstance(f, UploadFile) for f in files):
            raise ValidationError("Send the documents as files in multipart form field `files` "
                                  "(e.g. `curl -F files=@notes.md ...`).", param="files")
        pairs = []
        for f in files:
            data = await f.read(MAX_FILE_BYTES + 1)  # never hold more than the limit: over it is skipped anyway
            pairs.append((f.filename or "", data))
    finally:
        await form.close()
    report = await run_in_threadpool(services.rag.build_from_uploads, name, pairs)
    return report.to_dict()


@router.get("/indexes/{name}/chunks/{chunk_id}")
async def passage(name: str, chunk_id: str, request: Request, context_chars: int = 300):
    return await run_in_threadpool(_services(request).rag.passage, chunk_id, name, min(max(context_chars, 0), 5000))
