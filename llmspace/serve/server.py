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
    if settings.backend == "remote":  # the model runs there: check it answers and serves the model
        _say(f"llmspace: asking {settings.remote_base_url} for its chat model (backend remote)...")
        services.engine.load()
        _say(f"llmspace: chat model {services.engine.label}, answering in {time.perf_counter() - t0:.1f} s")
    else:
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
    grpc_server = None
    if settings.grpc_port is not None:
        if settings.grpc_port == settings.port:
            from llmspace.errors import ConfigError

            raise ConfigError(f"The gRPC port and the HTTP port are both {settings.port}; give gRPC its own "
                              "(--grpc-port, LLMSPACE_GRPC_PORT).", param="grpc_port")
        from llmspace.serve.grpc_server import start_grpc_server

        grpc_server = start_grpc_server(services, settings.grpc_port, settings.host)
        _say(f"llmspace: gRPC llmspace.v1.LLMSpace on {settings.host}:{settings.grpc_port}  (docs/grpc.md)")
    _say(f"llmspace: open http://{settings.host}:{settings.port}/  (API: /v1, /health, /metrics)")
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        if grpc_server is not None:  # uvicorn has stopped (Ctrl-C, SIGTERM): calls in flight get a few seconds
            from llmspace.serve.grpc_server import stop_grpc_server

            stop_grpc_server(grpc_server)


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
