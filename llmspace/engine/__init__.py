"""Inference backends behind one protocol (see ``base.py``).

``create_engine(settings)`` picks the backend named by ``settings.backend``.
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
    raise ConfigError(
        f"Backend {settings.backend!r} is not available yet. Use LLMSPACE_BACKEND=torch or onnx.",
        param="backend",
    )
