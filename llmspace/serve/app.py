"""The FastAPI app: API routes, error handling, and (optionally) the Gradio UI.

``create_app(services)`` builds one ASGI app serving the Gradio UI at ``/``,
the OpenAI-compatible API at ``/v1``, ``/health`` and ``/metrics``: what a
Hugging Face Space expects on port 7860.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from llmspace import __version__
from llmspace.errors import LLMSpaceError

log = logging.getLogger("llmspace.serve")


def _error(status: int, message: str, param: str | None = None, type_: str = "invalid_request_error",
           code: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": param, "code": code}},
                        status_code=status)


def _loc_to_param(loc) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or None


def _route(request: Request) -> str:
    """The matched route's template (``/v1/rag/indexes/{name}``), never the raw path: a metric
    label per client-chosen URL would grow without bound."""
    return getattr(request.scope.get("route"), "path", None) or "unmatched"


def create_app(services, with_ui: bool = True) -> FastAPI:
    app = FastAPI(title="llmspace", version=__version__, docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.services = services

    @app.exception_handler(LLMSpaceError)
    async def _llmspace_error(request: Request, exc: LLMSpaceError):
        services.metrics.errors.labels(_route(request), str(exc.status)).inc()
        headers = {"Retry-After": str(exc.retry_after)} if getattr(exc, "retry_after", None) else None
        return JSONResponse(exc.to_openai(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        services.metrics.errors.labels(_route(request), "400").inc()
        err = exc.errors()[0]
        if err.get("type") == "json_invalid":
            return _error(400, f"The request body is not valid JSON: {err.get('msg')}.", None,
                          code="invalid_json")
        param = _loc_to_param(err.get("loc", ()))
        what = "is required" if err.get("type") == "missing" else err.get("msg", "is invalid")
        return _error(400, f"`{param}` {what}.", param)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # pragma: no cover - last resort
        log.exception("unhandled error on %s", request.url.path)
        services.metrics.errors.labels(_route(request), "500").inc()
        return _error(500, f"Internal error: {type(exc).__name__}. See the server log.", type_="server_error")

    @app.get("/health")
    def health():
        from llmspace.export.web_bundle import web_export_status

        eng = services.engine
        return {"status": "ok", "version": __version__, "model": eng.model_id, "backend": eng.backend,
                "embedding_model": services.embedder.name,
                "model_loaded": getattr(eng, "_model", None) is not None,
                "engine": eng.engine_stats() if hasattr(eng, "engine_stats") else None,
                "web_export": web_export_status(services.settings)["state"]}

    @app.get("/metrics")
    def metrics():
        eng = services.engine
        if hasattr(eng, "engine_stats"):  # the engine thread's own figures, read at scrape time
            st = eng.engine_stats()
            services.metrics.batch_size.labels(eng.model_id).set(st.get("max_batch", 0))
            services.metrics.rejected.labels(eng.model_id).set(st.get("rejected", 0))
        body, ctype = services.metrics.render()
        return Response(body, media_type=ctype)

    from llmspace.serve import openai_routes

    app.include_router(openai_routes.router)
    for name in _EXTRA_ROUTERS:
        module = __import__(f"llmspace.serve.{name}", fromlist=["router"])
        app.include_router(module.router)
    if hasattr(services, "mount_hooks"):
        for hook in services.mount_hooks:
            hook(app, services)

    if with_ui:
        import gradio as gr

        from llmspace.ui import build_demo

        demo, i18n = build_demo(services)
        demo.queue(max_size=services.settings.queue_size, default_concurrency_limit=1)
        app = gr.mount_gradio_app(app, demo, path="/", i18n=i18n, footer_links=["api", "settings"])
    return app


# Routers other capabilities add (each module exposes ``router``).
_EXTRA_ROUTERS: list[str] = ["eval_routes", "web_routes", "rag_routes", "tokenize_routes"]
