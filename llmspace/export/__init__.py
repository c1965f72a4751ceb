"""Export stage: Optimum ONNX export, int8/int4 quantization, the Transformers.js
layout, the parity check against PyTorch, the embedding export, Space builds.

Importing this package is cheap; torch, optimum and onnxruntime load inside
the functions that need them.
"""

from __future__ import annotations

_LAZY = {
    "export_onnx": "llmspace.export.onnx_export",
    "ExportResult": "llmspace.export.onnx_export",
    "export_embedding": "llmspace.export.embedding",
    "check_layout": "llmspace.export.layout",
    "parse_dtypes": "llmspace.export.layout",
    "list_exports": "llmspace.export.layout",
    "DTYPE_FILES": "llmspace.export.layout",
    "build_space": "llmspace.export.space",
    "compare_backends": "llmspace.export.compare",
    "ExportError": "llmspace.export.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
