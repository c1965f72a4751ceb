"""Helpers every tab shares."""

from __future__ import annotations

import functools

import gradio as gr

from llmspace.errors import LLMSpaceError


def user_key(request: gr.Request | None) -> str | None:
    """Who is asking, for A/B assignment and recorded answers: the browser session."""
    session = getattr(request, "session_hash", None) if request is not None else None
    return f"ui:{session}" if session else None


def ui_errors(fn):
    """Show an ``LLMSpaceError`` to the user as a ``gr.Error`` (its message, no traceback)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LLMSpaceError as exc:
            raise gr.Error(exc.message) from None

    return wrapped
