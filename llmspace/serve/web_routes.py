"""The browser app at ``/web/``: the built page (web/dist), the exported models
it loads (``/web/models/<name>/...`` from ``LLMSPACE_HOME/exports``), the model
list (``/web/models/index.json``) and the backend comparison
(``POST /web/api/compare``).

Every response carries COOP/COEP headers: the page is then cross-origin
isolated, which lets onnxruntime-web use several WASM threads.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from llmspace.errors import NotFoundError
from llmspace.export.web_page import SOURCE_DIST, missing_page
from llmspace.export.web_page import web_dist as configured_dist

router = APIRouter(tags=["web"])

ISOLATION = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
             "Cross-Origin-Resource-Policy": "same-origin"}
DEFAULT_DIST = SOURCE_DIST  # a source checkout's web/dist; LLMSPACE_WEB_DIST points elsewhere


def web_dist(request: Request) -> Path:
    dist = getattr(request.app.state, "web_dist", None)
    return Path(dist) if dist else configured_dist(_settings(request))


def _settings(request: Request):
    return request.app.state.services.settings


def safe_file(root: Path, relpath: str) -> Path:
    """``root/relpath`` if it is a file inside ``root`` (no ``..``, no absolute paths), else 404."""
    root = root.resolve()
    target = (root / relpath).resolve()
    if ".." in Path(relpath).parts or not target.is_relative_to(root) or not target.is_file():
        raise NotFoundError(f"Not found: {relpath}")
    return target


def _file(path: Path, cache: str = "no-cache") -> FileResponse:
    return FileResponse(path, headers={**ISOLATION, "Cache-Control": cache})


@router.get("/web", include_in_schema=False)
def web_redirect():
    return RedirectResponse("/web/")


@router.get("/web/models/index.json")
def web_models(request: Request):
    """The exports the page can load (name, task, dtypes, file sizes), and how the
    server's preparation of them is going (``web_export``: state, step, message)."""
    from llmspace.export.layout import list_exports
    from llmspace.export.web_bundle import web_export_status

    settings = _settings(request)
    return JSONResponse({"models": list_exports(settings.exports_dir), "web_export": web_export_status(settings)},
                        headers=ISOLATION)


@router.get("/web/models/{name}/{path:path}", include_in_schema=False)
def web_model_file(name: str, path: str, request: Request):
    exports = _settings(request).exports_dir
    folder = safe_file(exports, f"{name}/config.json").parent
    return _file(safe_file(folder, path))


class CompareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    max_new_tokens: int = Field(64, ge=1, le=512)
    model: str | None = None  # export name; default: the configured chat model's export
    dtype: str | None = None


@router.post("/web/api/compare")
def web_compare(body: CompareRequest, request: Request):
    """The prompt on the server's PyTorch and ONNX backends (greedy): load s, first token s, tok/s."""
    from llmspace.export.compare import compare_backends

    rows = compare_backends(_settings(request), body.prompt, body.max_new_tokens, export=body.model,
                            dtype=body.dtype)
    return JSONResponse({"results": rows}, headers=ISOLATION)


@router.get("/web/{path:path}", include_in_schema=False)
def web_static(path: str, request: Request):
    dist = web_dist(request)
    missing = missing_page(dist, _settings(request))
    if missing:  # e.g. an installed wheel, which has no web/dist: say what is missing and how to make it
        return JSONResponse({"error": {"message": missing, "type": "not_found_error", "param": "web_dist",
                                       "code": "web_page_not_built"}}, status_code=404)
    if path in ("", "index.html"):
        return _file(dist / "index.html")
    # hashed assets and the ORT runtime never change under one name: cache them for a day
    return _file(safe_file(dist, path), cache="public, max-age=86400")


def standalone_app(settings, dist: Path | None = None):
    """A FastAPI app with only the browser routes (tests, benchmarks, a static preview)."""
    from types import SimpleNamespace

    from fastapi import FastAPI

    from llmspace.errors import LLMSpaceError

    app = FastAPI()
    app.state.services = SimpleNamespace(settings=settings)
    app.state.web_dist = dist

    @app.exception_handler(LLMSpaceError)
    async def _error(_request: Request, exc: LLMSpaceError):
        return JSONResponse(exc.to_openai(), status_code=exc.status)

    app.include_router(router)
    return app
