"""The folder layout Transformers.js loads, and the checks on it.

An export folder looks like::

    config.json  generation_config.json
    tokenizer.json  tokenizer_config.json (chat template inside)  special_tokens_map.json
    onnx/model.onnx  onnx/model_quantized.onnx  onnx/model_q4.onnx
    README.md (model card)  llmspace_export.json (how it was made, parity report)

Transformers.js picks the file from its ``dtype`` option: fp32 -> ``model.onnx``,
q8 -> ``model_quantized.onnx``, q4 -> ``model_q4.onnx``, int8 -> ``model_int8.onnx``
(int8 is opt-in: ``--dtype fp32,q8,q4,int8``).
"""

from __future__ import annotations

import json
from pathlib import Path

from llmspace.export.errors import ExportError

DTYPE_FILES: dict[str, str] = {"fp32": "model.onnx", "q8": "model_quantized.onnx", "q4": "model_q4.onnx",
                               "int8": "model_int8.onnx"}
META_FILE = "llmspace_export.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
REQUIRED_FILES = ("config.json", "generation_config.json", *TOKENIZER_FILES)


def parse_dtypes(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"fp32,q8"`` or ``["fp32", "q8"]`` -> ``["fp32", "q8"]``; unknown names are errors."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in DTYPE_FILES:
            raise ExportError(f"Unknown dtype {raw.strip()!r}. Choose from {', '.join(DTYPE_FILES)} "
                              f"(comma-separated, e.g. --dtype fp32,q8,q4).", param="dtype")
        if name not in out:
            out.append(name)
    if not out:
        raise ExportError(f"No dtype given. Choose from {', '.join(DTYPE_FILES)}.", param="dtype")
    return out


def onnx_path(folder: Path, dtype: str) -> Path:
    return Path(folder) / "onnx" / DTYPE_FILES[dtype]


def available_dtypes(folder: Path) -> list[str]:
    return [d for d in DTYPE_FILES if onnx_path(folder, d).exists()]


def check_layout(folder: Path, dtypes: list[str] | None = None) -> list[str]:
    """Problems that would stop Transformers.js loading ``folder`` (empty list: fine)."""
    folder = Path(folder)
    required = REQUIRED_FILES if _is_chat(folder) else ("config.json", *TOKENIZER_FILES)
    problems = [f"missing {name}" for name in required if not (folder / name).exists()]
    for dtype in dtypes or available_dtypes(folder) or ["fp32"]:
        if not onnx_path(folder, dtype).exists():
            problems.append(f"missing onnx/{DTYPE_FILES[dtype]} ({dtype})")
    if (folder / "model.onnx").exists():
        problems.append("model.onnx beside config.json: Transformers.js looks in onnx/")
    if (folder / "chat_template.jinja").exists():
        problems.append("chat_template.jinja present: Transformers.js reads the template from tokenizer_config.json")
    tc = folder / "tokenizer_config.json"
    if tc.exists():
        try:
            if not json.loads(tc.read_text(encoding="utf-8")).get("chat_template") and _is_chat(folder):
                problems.append("tokenizer_config.json has no chat_template")
        except ValueError:
            problems.append("tokenizer_config.json is not valid JSON")
    return problems


def _is_chat(folder: Path) -> bool:
    meta = folder / META_FILE
    if not meta.exists():
        return True
    return json.loads(meta.read_text()).get("task", "text-generation") == "text-generation"


def read_meta(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}


def list_exports(exports_dir: Path) -> list[dict]:
    """Every export under ``exports_dir``: name, task, dtypes and file sizes (for the web page)."""
    out = []
    root = Path(exports_dir)
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        dtypes = available_dtypes(folder)
        if not dtypes or not (folder / "config.json").exists():
            continue
        meta = read_meta(folder)
        out.append({
            "name": folder.name,
            "task": meta.get("task", "text-generation"),
            "dtypes": dtypes,
            "sizes": {d: onnx_path(folder, d).stat().st_size for d in dtypes},
            "source": meta.get("source"),
            "has_index": (folder / "index.json").exists(),
        })
    return out
