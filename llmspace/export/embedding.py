"""The embedding model to ONNX (Optimum ``feature-extraction``), and a RAG index
to a file the browser searches, so retrieval runs in the page too.

Transformers.js computes sentence vectors with
``pipeline('feature-extraction', name)(texts, {pooling: 'mean', normalize: true})``
over the exported ``last_hidden_state``: what all-MiniLM-L6-v2's
sentence-transformers modules (Transformer, mean Pooling, Normalize) compute.
The export's parity check compares exactly that against sentence-transformers.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

from llmspace.config import Settings
from llmspace.export.errors import ExportError
from llmspace.export.layout import META_FILE, onnx_path

SAMPLES = ["How do I export a model to ONNX?", "Retrieval augmented generation cites its sources.",
           "The quick brown fox jumps over the lazy dog."]
TOKENIZER_EXTRA = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MAX_DIFF = 1e-4


def onnx_sentence_vectors(folder: Path, texts: list[str]):
    """Mean-pooled, unit-normalised vectors from the exported ONNX file (as Transformers.js computes them)."""
    import numpy as np
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    sess = ort.InferenceSession(str(onnx_path(folder, "fp32")), providers=["CPUExecutionProvider"])
    enc = tok(texts, padding=True, truncation=True, return_tensors="np")
    names = {i.name for i in sess.get_inputs()}
    feed = {k: v.astype(np.int64) for k, v in enc.items() if k in names}
    hidden = sess.run(["last_hidden_state"], feed)[0]
    mask = enc["attention_mask"][..., None].astype(np.float32)
    vecs = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def export_embedding(model: str | None = None, out: Path | str | None = None, force: bool = False,
                     settings: Settings | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """Export the embedding model (default: ``settings.embedding_model``) to ``out``
    (default ``LLMSPACE_HOME/exports/<name>``); returns the export's meta with its parity figure."""
    from optimum.exporters.onnx import main_export
    from sentence_transformers import SentenceTransformer

    from llmspace import models
    from llmspace.export.card import write_card
    from llmspace.export.onnx_export import prepare_out
    from llmspace.fsutil import swap_in

    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    settings = settings or Settings.load()
    model = model or settings.embedding_model
    src = models.resolve(model, "embedding", settings.models_dir)
    spec = models.lookup(model)
    name = spec.name if spec else Path(str(src)).name
    out = prepare_out(Path(out) if out else settings.exports_dir / name, force)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        say(f"llmspace: exporting the embedding model {src} (feature-extraction) ...")
        main_export(str(src), output=str(tmp / ".raw"), task="feature-extraction", device="cpu",
                    do_validation=False, library_name="transformers")
        (tmp / "onnx").mkdir(parents=True)
        shutil.move(str(tmp / ".raw" / "model.onnx"), str(onnx_path(tmp, "fp32")))
        for f in ("config.json", *TOKENIZER_EXTRA):
            origin = Path(src) / f if isinstance(src, Path) and (Path(src) / f).exists() else tmp / ".raw" / f
            if origin.exists():
                shutil.copy2(origin, tmp / f)
        shutil.rmtree(tmp / ".raw")
        st = SentenceTransformer(str(src), device="cpu")
        ref = st.encode(SAMPLES, normalize_embeddings=True, convert_to_numpy=True)
        diff = float(abs(onnx_sentence_vectors(tmp, SAMPLES) - ref).max())
        if diff > MAX_DIFF:
            raise ExportError(f"The ONNX embeddings differ from sentence-transformers' by {diff:.2e} "
                              f"(> {MAX_DIFF}); the export is not usable.")
        meta = {"name": out.name, "task": "feature-extraction", "optimum_task": "feature-extraction",
                "source": str(src), "base_model": spec.hub_id if spec else None, "dtypes": ["fp32"],
                "pooling": "mean", "normalize": True, "dimension": int(ref.shape[1]),
                "files": {"fp32": {"path": "onnx/model.onnx", "bytes": onnx_path(tmp, "fp32").stat().st_size}},
                "parity": {"max_abs_diff_vs_sentence_transformers": diff, "samples": len(SAMPLES)},
                "seconds": round(time.perf_counter() - t0, 2),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        write_card(tmp, meta)
        swap_in(tmp, out, META_FILE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"llmspace: wrote {out} (max diff vs sentence-transformers {diff:.1e}).")
    return meta


def write_browser_index(folder: Path, chunks: list[dict], vectors, name: str = "") -> Path:
    """``index.json`` beside an embedding export: chunk texts and sources, and the
    unit vectors as base64 float32 (row-major), which the page's search reads."""
    import numpy as np

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(chunks) != vectors.shape[0]:
        raise ExportError(f"{len(chunks)} chunks but vectors of shape {vectors.shape}.")
    payload = {"name": name, "model": Path(folder).name, "dim": int(vectors.shape[1]), "count": len(chunks),
               "chunks": chunks, "vectors": base64.b64encode(vectors.tobytes()).decode("ascii")}
    path = Path(folder) / "index.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def export_rag_index(index_name: str, embedding_export: Path | str | None = None,
                     settings: Settings | None = None) -> Path:
    """Copy a built RAG index (``llmspace index build``) into the embedding export as ``index.json``."""
    from llmspace.export.layout import read_meta
    from llmspace.rag.index import RagIndex, index_dir

    settings = settings or Settings.load()
    folder = Path(embedding_export) if embedding_export else settings.exports_dir / settings.embedding_model
    if read_meta(folder).get("task") != "feature-extraction":
        raise ExportError(f"{folder} is not an embedding export. Run `llmspace export embedding` first.")
    index = RagIndex.load(index_dir(settings.indexes_dir, index_name), embedding_model=settings.embedding_model)
    chunks = [{"text": c.text, "source": c.source, "heading": c.heading} for c in index.chunks]
    return write_browser_index(folder, chunks, index.all_vectors(), name=index_name)
