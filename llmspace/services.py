"""The services one process shares: settings, the chat engine, the embedder,
and (as they are built) RAG, evals, logs. Everything loads lazily, once.

The CLI, the HTTP API and the Gradio UI all take a ``Services``.
"""

from __future__ import annotations

import threading
from functools import cached_property

from llmspace.config import Settings


class Services:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.load()
        self._lock = threading.RLock()
        if self.settings.ab:  # a bad A/B config fails at start (every shell builds a Services), not on a request
            from llmspace.evals.ab import ab_router

            ab_router(self)

    @cached_property
    def engine(self):
        """The chat engine of ``settings.backend`` (loaded on first use)."""
        from llmspace.engine import create_engine

        with self._lock:
            return create_engine(self.settings)

    @cached_property
    def embedder(self):
        from llmspace.embeddings import Embedder

        return Embedder(self.settings)

    @cached_property
    def rag(self):
        """RAG: indexes, search, grounded answers (``llmspace.rag.service.RagService``)."""
        from llmspace.rag.service import RagService

        return RagService(self)

    @cached_property
    def metrics(self):
        from llmspace.metrics import Metrics  # below the shells: the library records, /metrics renders

        return Metrics()

    def warm_up(self) -> None:
        """Load the default models now (server start) rather than on the first request."""
        self.engine.load()
        _ = self.embedder.model
