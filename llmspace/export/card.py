"""The model card (README.md with Hub metadata) written beside every export."""

from __future__ import annotations

from pathlib import Path

import yaml


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def write_card(folder: Path, meta: dict) -> Path:
    """README.md: front matter (library_name, pipeline_tag, base_model, tags) and a body
    with files, parity and usage. ``meta`` is the export's ``llmspace_export.json``."""
    chat = meta.get("task", "text-generation") == "text-generation"
    front = {
        "library_name": "transformers.js",
        "pipeline_tag": "text-generation" if chat else "feature-extraction",
        "tags": ["onnx", "transformers.js", "llmspace"] + (["conversational"] if chat else ["sentence-similarity"]),
        "license": meta.get("license") or "apache-2.0",
    }
    if meta.get("base_model"):
        front["base_model"] = meta["base_model"]
    name = meta.get("name") or Path(folder).name
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {name} (ONNX)", "",
             f"Exported by llmspace from `{meta.get('source')}`"
             + (f" with the LoRA adapter `{meta['adapter']}` merged" if meta.get("adapter") else "")
             + f" (Optimum task `{meta.get('optimum_task')}`, {meta.get('created_at')}).", "",
             "| dtype | file | size |", "|---|---|---|"]
    for dtype, info in meta.get("files", {}).items():
        lines.append(f"| {dtype} | `{info['path']}` | {_size(info['bytes'])} |")
    if meta.get("parity_table"):
        lines += ["", "## Parity with PyTorch", "", meta["parity_table"]]
    if chat:
        lines += ["", "## Use", "", "Transformers.js (browser; WebGPU or WASM):", "", "```js",
                  "import { pipeline } from '@huggingface/transformers';",
                  f"const chat = await pipeline('text-generation', '{name}', {{ dtype: 'q8' }});",
                  "const out = await chat([{ role: 'user', content: 'Hello!' }], { max_new_tokens: 64 });",
                  "```", "", "llmspace (server, onnxruntime):", "", "```bash",
                  f"LLMSPACE_BACKEND=onnx LLMSPACE_CHAT_MODEL={name}:q8 llmspace serve", "```"]
    else:
        lines += ["", "## Use", "", "```js", "import { pipeline } from '@huggingface/transformers';",
                  f"const embed = await pipeline('feature-extraction', '{name}');",
                  "const v = await embed(['a sentence'], { pooling: 'mean', normalize: true });", "```"]
    path = Path(folder) / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
