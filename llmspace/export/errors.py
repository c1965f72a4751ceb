"""Errors of the export, Hub and Space stages (messages say what to do next)."""

from __future__ import annotations

from llmspace.errors import LLMSpaceError


class ExportError(LLMSpaceError):
    """Bad export input (unknown dtype, existing output, wrong adapter) or a failed export."""


class HubError(LLMSpaceError):
    """A Hub push cannot go ahead (no token, bad repo id, network failure)."""

    status = 401
    type = "authentication_error"
