"""Start the one server: load models (converting the packaged GGUF once),
prepare the bundled index, then serve UI + API with uvicorn."""

from __future__ import annotations

import os
import sys
import time

from llmspace.config import Settings


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare_services(settings: Settings):
    """Build ``Services`` and do the slow first-start work with progress shown."""
    from llmspace.services import Services

    services = Services(settings)
    settings.ensure_home()
    t0 = time.perf_counter()
    _say(f"llmspace: home {settings.home}")
    _say(f"llmspace: loading chat model {settings.chat_model} ({settings.backend})...")
    services.engine.load()
    _say(f"llmspace: chat model ready in {time.perf_counter() - t0:.1f} s")
    t1 = time.perf_counter()
    _ = services.embedder.model
    _say(f"llmspace: embedding model {settings.embedding_model} ready in {time.perf_counter() - t1:.1f} s")
    for task in STARTUP_TASKS:
        task(services, _say)
    _say(f"llmspace: ready in {time.perf_counter() - t0:.1f} s")
    return services


def run_server(settings: Settings, with_ui: bool = True) -> None:
    import uvicorn

    from llmspace.serve.app import create_app

    services = prepare_services(settings)
    app = create_app(services, with_ui=with_ui)
    from llmspace.export.web_bundle import start_background

    start_background(settings, _say)  # what /web/ loads, in a subprocess: the server does not wait for it
    _say(f"llmspace: open http://{settings.host}:{settings.port}/  (API: /v1, /health, /metrics)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


def main() -> None:
    overrides = {}
    if os.environ.get("SPACE_ID") and "LLMSPACE_HOST" not in os.environ:
        overrides["host"] = "0.0.0.0"  # a Space routes traffic to the container
    run_server(Settings.load(**overrides))


def _bundled_index(services, say) -> None:
    if not services.settings.index_bundled_corpus:
        return
    try:
        from llmspace.rag.service import ensure_bundled_index
    except ImportError:  # RAG not installed in this build
        return
    t0 = time.perf_counter()
    ensure_bundled_index(services, progress=say)
    say(f"llmspace: bundled roadmap index ready in {time.perf_counter() - t0:.1f} s")


# Work done once at start, after the models load: (services, say) -> None.
STARTUP_TASKS = [_bundled_index]
