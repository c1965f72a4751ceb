"""Inference backends behind one protocol (see ``base.py``).

``create_engine(settings)`` picks the backend named by ``settings.backend``:
torch, onnx or genai in this process, or remote (an OpenAI-compatible server).
"""

from __future__ import annotations

from llmspace.config import Settings
from llmspace.engine.base import (  # noqa: F401  (re-exported: the public engine API)
    Completion,
    Delta,
    Engine,
    GenerationParams,
    Message,
    Usage,
    complete,
    validate_messages,
    validate_params,
)
from llmspace.errors import ConfigError


def create_engine(settings: Settings, model: str | None = None) -> Engine:
    if settings.backend == "torch":
        from llmspace.engine.torch_engine import TorchEngine

        return TorchEngine(settings, model)
    if settings.backend == "onnx":
        from llmspace.engine.onnx_engine import OnnxEngine

        return OnnxEngine(settings, model)
    if settings.backend == "genai":
        from llmspace.engine.genai_engine import GenaiEngine

        return GenaiEngine(settings, model)
    if settings.backend == "remote":
        from llmspace.engine.remote_engine import RemoteEngine

        return RemoteEngine(settings, model)
    raise ConfigError(
        f"Unknown backend {settings.backend!r}. Use LLMSPACE_BACKEND=torch, onnx, genai or remote.",
        param="backend",
    )
