"""Errors that tell the user what to do next.

Every shell (CLI, HTTP API, Gradio UI) turns an ``LLMSpaceError`` into a clear
message: the CLI prints it and exits non-zero, the API answers with an
OpenAI-style error body and ``status``, the UI raises ``gr.Error``.
"""

from __future__ import annotations


class LLMSpaceError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with;
    ``param`` names the offending field where there is one."""

    status: int = 400
    type: str = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_openai(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ConfigError(LLMSpaceError):
    """A setting is unknown or has a bad value."""


class ValidationError(LLMSpaceError):
    """A request is malformed (empty messages, max_tokens out of range, ...)."""


class ContextLengthError(ValidationError):
    """The prompt does not fit the model's context window."""

    def __init__(self, message: str, *, param: str | None = "messages"):
        super().__init__(message, param=param, code="context_length_exceeded")


class ModelNotFoundError(LLMSpaceError):
    status = 404
    type = "not_found_error"

    def __init__(self, message: str, *, param: str | None = "model"):
        super().__init__(message, param=param, code="model_not_found")


class NotFoundError(LLMSpaceError):
    status = 404
    type = "not_found_error"


class ModelLoadError(LLMSpaceError):
    status = 500
    type = "server_error"


class ServerBusyError(LLMSpaceError):
    """The engine's queue is full, or a request waited longer than the queue timeout. The API answers
    503 with ``Retry-After: retry_after`` (seconds); the OpenAI SDK retries it by itself."""

    status = 503
    type = "server_error"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = "server_busy"):
        super().__init__(message, code=code)
        self.retry_after = max(1, int(retry_after))


class GenerationError(LLMSpaceError):
    """The model failed in the middle of a generation (a backend crash). That request ends with this
    error; the engine thread drops it and keeps serving the others."""

    status = 500
    type = "server_error"


class UpstreamError(LLMSpaceError):
    """A remote backend is down, too slow, or answered something that is not an OpenAI response."""

    status = 502
    type = "server_error"


class DependencyError(LLMSpaceError):
    """An optional dependency is missing; the message names the install command."""

    status = 500
    type = "server_error"
