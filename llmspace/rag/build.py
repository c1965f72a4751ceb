"""Building an index: ingest -> chunk -> embed (only what changed) -> write -> swap.

The new index is written to ``indexes/.tmp-<name>-<id>/`` and swapped in by
``fsutil.replace_dir`` (``indexes/<name>`` is a link flipped in one rename to a
new version folder), under a per-name file lock. Readers never see the path
missing: they get the old index until the new one is complete. An exception or a
kill at any point leaves the old index (or none, if there was none) and at most
a stale ``.tmp-*`` folder or unlinked version, which listing ignores and the
next build of that name removes, under the same lock.

Re-indexing: documents are keyed by content hash. A document whose hash is in
the previous index (same embedding model and chunker settings) keeps its chunks
and vectors; only new or changed files are chunked and embedded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import llmspace
from llmspace.errors import ValidationError
from llmspace.fsutil import artefact_lock, current, recover_dir, replace_dir
from llmspace.rag.chunking import ChunkerSettings, chunk_document, embed_text, token_splitter, tokenizer_counter
from llmspace.rag.index import FORMAT_VERSION, MANIFEST, RagIndex, canonical_model, index_dir, validate_name
from llmspace.rag.ingest import MAX_FILE_BYTES, Document, Skipped, discover, ingest
from llmspace.rag.text import analyze
from llmspace.rag.types import Chunk

Progress = Callable[[float, str], None]
DENSE_KINDS = ("flat", "hnsw")
EMBED_BATCH = 256  # chunks per progress step


@dataclass
class BuildReport:
    name: str
    path: str
    documents: int
    chunks: int
    embedded_chunks: int  # newly embedded in this build
    reused_chunks: int  # carried over from the previous build
    embedded_files: list[str] = field(default_factory=list)
    reused_files: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    duplicates: list[Skipped] = field(default_factory=list)
    duplicate_chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def warnings(self) -> list[str]:
        return [f"skipped {s}" for s in self.skipped] + [f"duplicate {d}" for d in self.duplicates]

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("skipped", "duplicates")}
        d["skipped"] = [s.__dict__ for s in self.skipped]
        d["duplicates"] = [s.__dict__ for s in self.duplicates]
        d["warnings"] = self.warnings
        return d


def build_index(indexes_dir: Path, name: str, paths: Iterable[Path | str], embedder, *,
                chunker: ChunkerSettings | None = None, dense: str = "flat", progress: Progress | None = None,
                max_file_bytes: int = MAX_FILE_BYTES, incremental: bool = True) -> BuildReport:
    """Build (or rebuild) index ``name`` from files and folders; returns what was done.

    Raises ``ValidationError`` when nothing indexable was found (the message lists
    each skipped file and why); the previous index, if any, is left as it was."""
    t0 = time.perf_counter()
    validate_name(name)
    chunker = chunker or ChunkerSettings()
    if dense not in DENSE_KINDS:
        raise ValidationError(f"dense must be one of {', '.join(DENSE_KINDS)}; got {dense!r}.", param="dense")
    say = progress or (lambda fraction, message: None)
    paths = [Path(p) for p in paths]
    indexes_dir.mkdir(parents=True, exist_ok=True)
    target = index_dir(indexes_dir, name)
    with artefact_lock(target):  # a second build of this name waits here
        recover(indexes_dir, name)
        for stale in indexes_dir.glob(f".tmp-{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)

        say(0.0, "reading files")
        result = ingest(paths, max_file_bytes=max_file_bytes)
        if not result.documents:
            raise _nothing_to_index(paths, result.skipped, result.duplicates)
        if chunker.chunk_tokens > embedder.max_seq_length:
            raise ValidationError(f"chunk_tokens={chunker.chunk_tokens} is over what the embedding model reads "
                                  f"({embedder.max_seq_length} tokens).", param="chunk_tokens")

        previous = _previous(target, embedder.name, chunker) if incremental else None
        old_by_doc: dict[str, list[int]] = {}
        if previous is not None:
            for row, c in enumerate(previous.chunks):
                old_by_doc.setdefault(c.doc_id, []).append(row)
        old_vectors = previous.all_vectors() if previous is not None and old_by_doc else None

        report = BuildReport(name, str(target), len(result.documents), 0, 0, 0,
                             skipped=result.skipped, duplicates=result.duplicates)
        count, split = tokenizer_counter(embedder.tokenizer), token_splitter(embedder.tokenizer)
        per_doc: list[tuple[Document, list[Chunk], object]] = []  # (doc, chunks, reused vectors | None)
        for i, doc in enumerate(result.documents):
            rows = old_by_doc.get(doc.doc_id)
            if rows is not None:
                chunks = [_with_source(previous.chunks[r], doc.source) for r in rows]
                per_doc.append((doc, chunks, old_vectors[rows]))
                report.reused_files.append(doc.source)
            else:
                per_doc.append((doc, chunk_document(doc, chunker, count, split), None))
                report.embedded_files.append(doc.source)
            say(0.05 + 0.15 * (i + 1) / len(result.documents), f"chunked {doc.source}")
        if previous is not None:
            kept = {d.source for d in result.documents}
            report.removed_files = sorted(set(previous.manifest.get("files", {})) - kept)

        chunks, vectors, report.duplicate_chunks = _assemble(per_doc, embedder, say, report)
        report.chunks = len(chunks)
        if not chunks:
            raise ValidationError("The documents hold no text to index (every chunk was empty).", param="path")

        tmp = indexes_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            say(0.85, "writing the dense index")
            _write_dense(tmp, vectors, dense)
            say(0.9, "writing the BM25 index")
            _write_bm25(tmp, chunks)
            _write_jsonl(tmp / "chunks.jsonl", (c.to_dict() for c in chunks))
            _write_jsonl(tmp / "documents.jsonl", (_doc_record(d) for d, _, _ in per_doc))
            report.seconds = round(time.perf_counter() - t0, 3)
            manifest = _manifest(name, paths, embedder, chunker, dense, per_doc, report)
            (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
            say(0.97, "swapping in the new index")
            swap(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    say(1.0, f"built index {name!r}: {report.documents} documents, {report.chunks} chunks")
    return report


# ---------------------------------------------------------------- atomic swap
swap = replace_dir


def recover(indexes_dir: Path, name: str) -> None:
    """Clear what a killed build left (and put the old index back if a kill left
    none linked). Only under the build lock: a reader calling this could undo a
    build's swap in progress."""
    recover_dir(indexes_dir / name, MANIFEST)


# ---------------------------------------------------------------- steps
def _nothing_to_index(paths: list[Path], skipped: list[Skipped], duplicates: list[Skipped]) -> ValidationError:
    where = ", ".join(str(p) for p in paths)
    if not skipped and not duplicates:
        return ValidationError(f"No files found in {where}: the folder is empty (hidden files are ignored). "
                               "Add .md, .txt, .html, .pdf or .docx files.", param="path")
    lines = "; ".join(str(s) for s in skipped[:20]) + (f"; and {len(skipped) - 20} more" if len(skipped) > 20 else "")
    return ValidationError(f"Nothing to index in {where}: every file was skipped ({lines}). "
                           "Supported: .md, .txt, .html, .pdf (with a text layer), .docx.", param="path")


def _previous(target: Path, embedding_model: str, chunker: ChunkerSettings) -> RagIndex | None:
    """The existing index, if its chunks and vectors can be reused as they are."""
    real = current(target)
    if real is None or not (real / MANIFEST).exists():
        return None
    try:
        old = RagIndex.load(real)
    except Exception:  # noqa: BLE001 - an unreadable old index is simply rebuilt
        return None
    m = old.manifest
    if (canonical_model(m.get("embedding", {}).get("model", "")) != canonical_model(embedding_model)
            or m.get("chunker") != chunker.to_dict()):
        return None
    return old


def _with_source(chunk: Chunk, source: str) -> Chunk:
    if chunk.source == source:
        return chunk
    return Chunk(**{**chunk.to_dict(), "source": source})


def _assemble(per_doc, embedder, say: Progress, report: BuildReport):
    """All chunks in document order with their vectors; new chunks embedded here.
    Chunks whose text repeats an earlier chunk's exactly are dropped."""
    import numpy as np

    seen: set[str] = set()
    keep: list[tuple[Chunk, object]] = []  # (chunk, vector or None = to embed)
    dup = 0
    for _doc, chunks, vecs in per_doc:
        for j, c in enumerate(chunks):
            h = hashlib.sha1(" ".join(c.text.split()).encode("utf-8")).hexdigest()
            if h in seen:
                dup += 1
                continue
            seen.add(h)
            keep.append((c, None if vecs is None else vecs[j]))
    todo = [i for i, (_, v) in enumerate(keep) if v is None]
    dim = embedder.dimension
    vectors = np.zeros((len(keep), dim), dtype=np.float32)
    for i, (_, v) in enumerate(keep):
        if v is not None:
            vectors[i] = v
    t = time.perf_counter()
    for b in range(0, len(todo), EMBED_BATCH):
        rows = todo[b:b + EMBED_BATCH]
        vectors[rows] = embedder.embed([embed_text(keep[r][0]) for r in rows])
        say(0.2 + 0.65 * min(1.0, (b + len(rows)) / len(todo)), f"embedded {b + len(rows)}/{len(todo)} chunks")
    report.embed_seconds = round(time.perf_counter() - t, 3)
    report.embedded_chunks, report.reused_chunks = len(todo), len(keep) - len(todo)
    return [c for c, _ in keep], vectors, dup


def _write_dense(folder: Path, vectors, kind: str) -> None:
    import faiss

    dim = vectors.shape[1]
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
    else:
        index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    faiss.write_index(index, str(folder / "dense.faiss"))


def _write_bm25(folder: Path, chunks: list[Chunk]) -> None:
    import bm25s

    tokens = [analyze(embed_text(c)) or [""] for c in chunks]
    df = Counter(t for toks in tokens for t in set(toks) if t)
    retriever = bm25s.BM25(k1=1.2, b=0.75)
    retriever.index(tokens, show_progress=False)
    retriever.save(str(folder / "bm25"), show_progress=False)
    (folder / "bm25" / "terms.json").write_text(json.dumps(df, ensure_ascii=False), encoding="utf-8")


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _doc_record(doc: Document) -> dict:
    return {"doc_id": doc.doc_id, "source": doc.source, "title": doc.title, "format": doc.format,
            "lang": doc.lang, "sha256": doc.sha256, "size": doc.size, "encoding": doc.encoding,
            "page_starts": doc.page_starts, "text": doc.text}


def _manifest(name, paths, embedder, chunker, dense, per_doc, report: BuildReport) -> dict:
    langs = Counter(c.lang for _, cs, _ in per_doc for c in cs)
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "build_id": uuid.uuid4().hex,
        "llmspace_version": llmspace.__version__,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": report.seconds,
        "roots": [str(p.resolve()) for p in paths],
        "embedding": {"model": canonical_model(embedder.name), "dimension": embedder.dimension, "normalized": True},
        "chunker": chunker.to_dict(),
        "dense": {"kind": dense, "metric": "inner_product", **({"m": 32, "ef_search": 64} if dense == "hnsw" else {})},
        "bm25": {"library": "bm25s", "k1": 1.2, "b": 0.75, "analyzer": "llmspace.rag.text.analyze (jieba for zh)"},
        "counts": {"documents": report.documents, "chunks": report.chunks, "skipped": len(report.skipped),
                   "duplicates": len(report.duplicates), "duplicate_chunks": report.duplicate_chunks,
                   "languages": dict(langs)},
        "inputs": files_fingerprint(paths),
        "files": {d.source: {"sha256": d.sha256, "doc_id": d.doc_id, "bytes": d.size, "format": d.format,
                             "lang": d.lang, "chunks": len(cs)} for d, cs, _ in per_doc},
        "skipped": [s.__dict__ for s in report.skipped],
        "duplicates": [s.__dict__ for s in report.duplicates],
    }


def files_fingerprint(paths: Iterable[Path | str]) -> dict[str, str]:
    """``{source: sha256}`` of the files under ``paths`` (to tell whether an index is current)."""
    out = {}
    for path, source in discover(paths):
        out[source] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
