"""Streaming responses that end their source when the client goes away.

Starlette runs a sync generator in the thread pool and, when the client
disconnects, just stops asking it for more: the generator is left suspended
until some later garbage collection. Its ``finally`` -- where a chat or RAG
stream closes the engine's stream (freeing the model) and records the partial
answer as ``cancelled`` -- would run late or never. ``EventStream`` closes it
as soon as the response ends, however it ends.
"""

from __future__ import annotations

from typing import Iterator

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response over a sync iterator, closed when the response ends."""

    def __init__(self, content: Iterator[str], headers: dict | None = None):
        self._source = content
        super().__init__(content, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
                close = getattr(self._source, "close", None)
                if close is not None:  # in a thread: it may write to the database
                    await anyio.to_thread.run_sync(close)
