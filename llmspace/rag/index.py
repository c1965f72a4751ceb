"""A persisted RAG index: dense vectors (FAISS) + BM25 (bm25s) + the chunks.

Layout of ``LLMSPACE_HOME/indexes/<name>/``::

    manifest.json     how it was made: embedding model, chunker settings, counts,
                      per-file hashes, llmspace version (the index's meta.json)
    chunks.jsonl      one Chunk per line; line i is row i of the vectors
    documents.jsonl   per document: id, source, title, extracted text (passage view)
    dense.faiss       IndexFlatIP (exact, default) or IndexHNSWFlat (approximate)
    bm25/             bm25s matrices; terms.json holds document frequencies

``<name>`` is a link to ``.<name>.versions/<id>/`` (a plain folder, as older
llmspace wrote it, loads too). Writes go to ``.tmp-<name>-<id>/`` beside it and
are swapped in by flipping the link (see ``fsutil`` and ``build.py``), so a
reader sees the old index or the new one, never half and never none.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from llmspace import fsutil
from llmspace.errors import ConfigError, NotFoundError, ValidationError
from llmspace.rag.types import Chunk

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise ValidationError(
            f"Index name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (no slashes), e.g. `my-notes`.", param="name")
    return name


def index_dir(indexes_dir: Path, name: str) -> Path:
    return indexes_dir / validate_name(name)


def read_manifest(path: Path) -> dict:
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"{path} is not a llmspace index (no {MANIFEST}).", param="index") from None
    except ValueError as exc:
        raise ConfigError(f"{path / MANIFEST} is corrupt ({exc}); rebuild the index.", param="index") from None


def list_indexes(indexes_dir: Path) -> list[dict]:
    """Summaries of every index (name, documents, chunks, model, built_at, bytes)."""
    out = []
    if not indexes_dir.exists():
        return out
    for d in sorted(indexes_dir.iterdir()):
        if d.name.startswith(".") or not (d / MANIFEST).exists():
            continue
        try:
            m = read_manifest(d)
        except (NotFoundError, ConfigError):
            continue
        out.append(summary(m, d))
    return out


def summary(manifest: dict, path: Path) -> dict:
    return {
        "name": manifest.get("name", path.name),
        "documents": manifest.get("counts", {}).get("documents", 0),
        "chunks": manifest.get("counts", {}).get("chunks", 0),
        "embedding_model": manifest.get("embedding", {}).get("model"),
        "dense": manifest.get("dense", {}).get("kind"),
        "built_at": manifest.get("built_at"),
        "bytes": dir_size(path),
        "path": str(path),
    }


def dir_size(path: Path) -> int:
    total = 0
    for p in Path(os.path.realpath(path)).rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:  # a rebuild deleted this version meanwhile
            pass
    return total


DELETE_WAIT_S = 30.0


def delete_index(indexes_dir: Path, name: str) -> None:
    """Delete index ``name`` (readers see it gone at once), under its build lock."""
    from filelock import Timeout

    path = index_dir(indexes_dir, name)
    if not (path / MANIFEST).exists():
        raise NotFoundError(f"No index named {name!r}. See `llmspace index ls`.", param="name")
    try:
        with fsutil.artefact_lock(path, timeout=DELETE_WAIT_S):
            fsutil.recover_dir(path, MANIFEST)
            fsutil.remove_dir(path)
    except Timeout:
        raise ValidationError(f"Index {name!r} is being built; delete it when the build has finished.",
                              param="name") from None


@dataclass
class RagIndex:
    """A loaded index. ``dense`` is a FAISS index; ``bm25`` a ``bm25s.BM25``;
    ``df`` the document frequency of each BM25 term (for coverage scores)."""

    path: Path
    manifest: dict
    chunks: list[Chunk]
    dense: object
    bm25: object
    df: dict[str, int]
    documents: dict[str, dict] = field(default_factory=dict)  # doc_id -> {source, title, text, ...}

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def embedding_model(self) -> str:
        return self.manifest["embedding"]["model"]

    def __len__(self) -> int:
        return len(self.chunks)

    # ------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: Path, embedding_model: str | None = None, mmap: bool = False) -> "RagIndex":
        """Load an index; with ``embedding_model`` given, refuse one built with another model."""
        import bm25s
        import faiss

        shown, path = path, fsutil.current(path) or path  # read every file from one version
        manifest = read_manifest(path)
        name = manifest.get("name", shown.name)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"Index {name!r} has format {manifest.get('format_version')}, this llmspace reads "
                              f"format {FORMAT_VERSION}. Rebuild it: `llmspace index build PATH --name {name}`.",
                              param="index")
        if embedding_model is not None:
            check_embedding_model(manifest, embedding_model)
        chunks = [Chunk(**json.loads(line)) for line in
                  (path / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line]
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        dense = faiss.read_index(str(path / "dense.faiss"), flags)
        if dense.ntotal != len(chunks):
            raise ConfigError(f"Index {name!r} is inconsistent ({dense.ntotal} vectors, {len(chunks)} chunks); "
                              f"rebuild it: `llmspace index build PATH --name {name}`.", param="index")
        if "ef_search" in manifest.get("dense", {}) and hasattr(dense, "hnsw"):
            dense.hnsw.efSearch = int(manifest["dense"]["ef_search"])
        bm25 = bm25s.BM25.load(str(path / "bm25"), mmap=mmap, show_progress=False)
        df = json.loads((path / "bm25" / "terms.json").read_text(encoding="utf-8"))
        documents = {}
        docs_file = path / "documents.jsonl"
        if docs_file.exists():
            for line in docs_file.read_text(encoding="utf-8").splitlines():
                if line:
                    d = json.loads(line)
                    documents[d["doc_id"]] = d
        return cls(shown, manifest, chunks, dense, bm25, df, documents)

    # ------------------------------------------------------------ search primitives
    def dense_search(self, qvec, k: int) -> list[tuple[int, float]]:
        """Top-``k`` rows by inner product (= cosine: vectors are unit-norm)."""
        import numpy as np

        k = min(k, len(self.chunks))
        if k <= 0:
            return []
        scores, ids = self.dense.search(np.asarray(qvec, dtype=np.float32).reshape(1, -1), k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    def bm25_search(self, terms: list[str], k: int) -> list[tuple[int, float]]:
        """Top-``k`` rows by BM25 score (rows scoring 0 left out)."""
        import numpy as np

        if not terms or not self.chunks:
            return []
        scores = self.bm25.get_scores(terms)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def vectors(self, rows: list[int]):
        """The stored unit vectors of ``rows`` (for MMR and incremental rebuilds)."""
        import numpy as np

        if not rows:
            return np.zeros((0, self.dense.d), dtype=np.float32)
        return np.vstack([self.dense.reconstruct(int(r)) for r in rows]).astype(np.float32)

    def all_vectors(self):
        """Every stored vector, ``(len(self), dim)`` float32."""
        import numpy as np

        if not len(self.chunks):
            return np.zeros((0, self.dense.d), dtype=np.float32)
        return self.dense.reconstruct_n(0, len(self.chunks)).astype(np.float32)

    def coverage(self, terms: list[str], chunk_terms: set[str]) -> float:
        """IDF-weighted share of the query's terms found in a chunk, in [0, 1].
        A term the corpus has never seen weighs most, so off-topic questions score low."""
        import math

        if not terms:
            return 0.0
        n = max(1, len(self.chunks))
        total = found = 0.0
        for t in set(terms):
            df = self.df.get(t, 0)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            total += idf
            if t in chunk_terms:
                found += idf
        return found / total if total else 0.0

    def passage(self, chunk: Chunk, context_chars: int = 300) -> dict:
        """The chunk inside its document: text before, the chunk, text after."""
        doc = self.documents.get(chunk.doc_id)
        if not doc:
            return {"before": "", "text": chunk.text, "after": "", "source": chunk.source}
        text = doc["text"]
        return {"before": text[max(0, chunk.start - context_chars):chunk.start], "text": text[chunk.start:chunk.end],
                "after": text[chunk.end:chunk.end + context_chars], "source": chunk.source, "title": doc.get("title")}


def canonical_model(name: str) -> str:
    from llmspace import models

    spec = models.lookup(name)
    return spec.name if spec else name


def check_embedding_model(manifest: dict, configured: str) -> None:
    built = manifest.get("embedding", {}).get("model", "?")
    if canonical_model(built) != canonical_model(configured):
        name = manifest.get("name", "?")
        raise ConfigError(
            f"Index {name!r} was built with embedding model {built!r}, but the configured embedding model is "
            f"{configured!r}; its vectors are not comparable. Rebuild it (`llmspace index build PATH --name {name}`) "
            f"or set LLMSPACE_EMBEDDING_MODEL={built}.", param="embedding_model")
