"""One prompt, several backends, side by side: load time, time to first token, tok/s.

``compare_backends`` runs the prompt greedily on the server's PyTorch and ONNX
Runtime backends (the web page adds the browser's own row); the UI can show its
rows as a table. Engines are kept after their first load, so ``load_s`` is the
one-time cost and later runs measure decoding only; at most
``compare_max_engines`` are kept (the least recently used goes), and only
engines that loaded: a client naming models cannot fill the memory.
"""

from __future__ import annotations

import threading
from pathlib import Path

from llmspace.config import Settings
from llmspace.lru import LRU

_ENGINES: LRU[tuple, object] = LRU(Settings.model_fields["compare_max_engines"].default)
_LOCK = threading.Lock()


def _engine(settings: Settings, backend: str, model: str, dtype: str | None):
    """A loaded engine, from the cache or loaded now (a failed load is not kept)."""
    if backend == "onnx":
        from llmspace.engine.onnx_engine import resolve_export

        folder, dtype = resolve_export(model, settings.exports_dir, dtype)  # names that differ, one export
        key = (str(settings.home), backend, str(folder), dtype)
    else:
        key = (str(settings.home), backend, model, dtype)
    with _LOCK:
        _ENGINES.maxsize = settings.compare_max_engines
        engine = _ENGINES.get(key)
        if engine is None:
            if backend == "onnx":
                from llmspace.engine.onnx_engine import OnnxEngine

                engine = OnnxEngine(settings, model, dtype=dtype)
            else:
                from llmspace.engine import create_engine

                engine = create_engine(settings.model_copy(update={"backend": backend}), model)
            engine.load()
            _ENGINES[key] = engine
        return engine


def torch_source(settings: Settings, export: str | None) -> str:
    """The PyTorch model an export came from (so both rows run the same weights)."""
    from llmspace.engine.onnx_engine import resolve_export
    from llmspace.export.layout import read_meta

    if export:
        folder, _ = resolve_export(export, settings.exports_dir)
        meta = read_meta(folder)
        if meta.get("source") and not meta.get("adapter") and Path(meta["source"]).exists():
            return meta["source"]
    return settings.chat_model


def compare_backends(settings: Settings, prompt: str, max_new_tokens: int = 64, export: str | None = None,
                     dtype: str | None = None, backends: tuple[str, ...] = ("torch", "onnx")) -> list[dict]:
    """One row per backend: backend, model, dtype, load_s, ttft_s, tokens_per_s, completion_tokens, text.
    A backend that fails gives a row with ``error`` instead of stopping the others."""
    from llmspace.engine.base import GenerationParams, Message, complete, validate_messages, validate_params

    messages = validate_messages([Message("user", prompt)], settings.max_request_chars)
    if export:  # an export the client names must exist, with that dtype: a clear 404 before anything loads
        from llmspace.engine.onnx_engine import resolve_export

        resolve_export(export, settings.exports_dir, dtype)
    params = validate_params(GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0),
                             settings.max_tokens_limit)
    rows = []
    for backend in backends:
        model = (export or settings.chat_model) if backend == "onnx" else torch_source(settings, export)
        row = {"backend": backend, "model": model, "dtype": dtype if backend == "onnx" else "fp32"}
        try:
            engine = _engine(settings, backend, model, dtype if backend == "onnx" else None)
            done = complete(engine, messages, params)
            row.update(dtype=getattr(engine, "dtype", None) or row["dtype"],
                       load_s=round(engine.load_seconds or 0.0, 3), text=done.text,
                       completion_tokens=done.usage.completion_tokens, **done.timings)
        except Exception as exc:  # one failing backend must not hide the others' figures
            row["error"] = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows
