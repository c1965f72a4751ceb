"""Evaluation routes: human feedback, the A/B split and results, stored eval runs.

* ``POST /v1/feedback`` — a thumbs up/down (and comment) on an answer, by the
  ``id`` the chat/RAG route returned, or with the question and answer inline.
* ``GET /v1/feedback``, ``GET /v1/feedback/export`` — ratings, and rated
  answers as eval cases (JSONL, the same as ``llmspace feedback export``).
* ``GET /v1/ab`` — the live split and the per-variant comparison.
* ``GET /v1/evals/runs[/{run}[/report.html]]`` — stored eval runs.

Also ``user_key`` (who a request is: what A/B assignment and feedback hash),
which the serving routes pass to the library calls; those assign the A/B arm
and record each response themselves (``llmspace.evals.online``), and
``choose_arm``/``record`` here are thin hooks over the same.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(prefix="/v1", tags=["evaluation"])


class CitationIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    n: int | None = None
    chunk_id: str = ""
    source: str = ""
    valid: bool = True


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down", 1, -1]
    response_id: str | None = Field(None, max_length=200, description="The `id` of a chat/RAG response.")
    comment: str | None = Field(None, max_length=2000)
    question: str | None = Field(None, description="Needed when response_id is not given or not recorded.")
    answer: str | None = None
    kind: Literal["chat", "rag"] | None = None
    index: str | None = None
    citations: list[CitationIn] | None = None
    user: str | None = Field(None, max_length=200, description="End-user id (stored hashed).")


def _services(request: Request):
    return request.app.state.services


def user_key(request: Request, user: str | None = None) -> str | None:
    """What A/B assignment and feedback hash: the end-user id if sent, else the API key."""
    from llmspace.evals.online import client_key

    return client_key(user, request.headers.get("authorization"))


@router.post("/feedback")
async def post_feedback(body: FeedbackIn, request: Request):
    from llmspace.evals.feedback import add_feedback

    services = _services(request)
    row = await run_in_threadpool(
        add_feedback, services.settings.db_path, rating=body.rating, response_id=body.response_id,
        comment=body.comment, question=body.question, answer=body.answer, kind=body.kind, index=body.index,
        cited=[c.model_dump() for c in body.citations] if body.citations is not None else None,
        user_key=user_key(request, body.user))
    row.pop("user_hash", None)
    return {"object": "feedback", **row}


@router.get("/feedback")
def get_feedback(request: Request, limit: int = Query(50, ge=1, le=1000),
                 rating: Literal["up", "down"] | None = None):
    from llmspace.evals.feedback import list_feedback

    rows = list_feedback(_services(request).settings.db_path, limit,
                         rating=None if rating is None else (1 if rating == "up" else -1))
    for r in rows:
        r.pop("user_hash", None)
    return {"object": "list", "data": rows}


@router.get("/feedback/export")
def export_feedback(request: Request, rating: Literal["all", "up", "down"] = "all"):
    import json

    from llmspace.evals.feedback import export_cases

    cases = export_cases(_services(request).settings.db_path, rating=rating)
    return PlainTextResponse("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases),
                             media_type="application/x-ndjson")


@router.get("/ab")
def get_ab(request: Request, since_hours: float | None = Query(None, gt=0)):
    import time

    from llmspace.evals.ab import ab_router

    router = ab_router(_services(request))
    since = time.time() - since_hours * 3600 if since_hours else None
    return {"config": router.describe(), "report": router.report(since)}


@router.get("/evals/runs")
def list_runs(request: Request, limit: int = Query(20, ge=1, le=500)):
    from llmspace.evals.api import store_for

    return {"object": "list", "data": [r.to_dict(with_results=False)
                                       for r in store_for(_services(request)).list(limit)]}


@router.get("/evals/runs/{run}")
def get_run(run: str, request: Request):
    from llmspace.evals.api import get_run as _get

    return _get(_services(request), run).to_dict()


@router.get("/evals/runs/{run}/report.html", response_class=HTMLResponse)
def get_run_html(run: str, request: Request):
    from llmspace.evals.api import get_run as _get
    from llmspace.evals.report import render_html

    return HTMLResponse(render_html(_get(_services(request), run)))


# ------------------------------------------------- hooks for serving routes
def choose_arm(services, request: Request, user: str | None = None):
    """The A/B arm for this request (``None`` when A/B is off). The library calls
    (``chat.start_chat``, ``RagService.stream_answer``) choose it themselves."""
    from llmspace.evals.online import choose_arm as choose

    return choose(services, user_key(request, user))


def record(services, request: Request, *, response_id: str, kind: str, question: str | list, answer: str, usage=None,
           timings: dict | None = None, model: str | None = None, arm=None, user: str | None = None,
           index: str | None = None, citations: list | None = None) -> None:
    """Store one served answer (``llmspace.evals.online.record``, which the library
    calls itself for chat and RAG answers). Never raises."""
    from llmspace.evals.online import record as _record

    _record(services, response_id=response_id, kind=kind, question=question, answer=answer, usage=usage,
            timings=timings, model=model, variant=arm.name if arm is not None else None,
            user_key=user_key(request, user), index=index, citations=citations)
