"""``RagService``: the one object the CLI, the HTTP API and the Gradio tab call.

It owns no logic of its own beyond caching: loaded indexes are kept per name
and reloaded when the index on disk changes (a rebuild links the name to a new
version folder; see ``fsutil``). Models come from ``Services`` (loaded once).
"""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Iterator

from llmspace import fsutil
from llmspace.errors import NotFoundError, ValidationError
from llmspace.lru import LRU
from llmspace.rag import index as idx
from llmspace.rag.answer import AnswerParams, stream_answer
from llmspace.rag.build import BuildReport, Progress, build_index
from llmspace.rag.bundled import ensure_bundled_index  # noqa: F401  (re-exported for the app's start-up)
from llmspace.rag.chunking import ChunkerSettings
from llmspace.rag.ingest import MAX_FILE_BYTES, MAX_UPLOAD_FILES, safe_upload_name
from llmspace.rag.retrieve import RetrievalParams, Retriever, load_reranker
from llmspace.rag.types import Answer, Chunk, SearchHit


class RagService:
    def __init__(self, services):
        self.services = services
        self.settings = services.settings
        self._lock = threading.RLock()
        # loaded indexes by name, the least recently used dropped past the setting (names come from clients)
        self._cache: LRU[str, tuple[tuple, Retriever]] = LRU(self.settings.rag_cache_size)
        self._reranker = None

    # ------------------------------------------------------------ indexes
    @property
    def indexes_dir(self) -> Path:
        return self.settings.indexes_dir

    def _name(self, name: str | None) -> str:
        return idx.validate_name(name or self.settings.default_index)

    def build(self, paths: list[Path | str], name: str | None = None, *, dense: str = "flat",
              chunker: ChunkerSettings | None = None, progress: Progress | None = None,
              max_file_bytes: int = MAX_FILE_BYTES) -> BuildReport:
        """Build or rebuild an index from files/folders (only changed files are re-embedded)."""
        name = self._name(name)
        if not paths:
            raise ValidationError("Give at least one file or folder to index.", param="path")
        report = build_index(self.indexes_dir, name, paths, self.services.embedder, chunker=chunker, dense=dense,
                             progress=progress, max_file_bytes=max_file_bytes)
        self._cache.pop(name, None)
        return report

    def build_from_uploads(self, name: str, files: list[tuple[str, bytes | Path]], *,
                           progress: Progress | None = None, max_file_bytes: int = MAX_FILE_BYTES,
                           dense: str = "flat") -> BuildReport:
        """Build index ``name`` from uploaded ``(file name, bytes or temp path)`` pairs.
        Names are checked first (``../../etc/passwd`` is refused, nothing is written)."""
        name = self._name(name)
        if not files:
            raise ValidationError("No files uploaded.", param="files")
        if len(files) > MAX_UPLOAD_FILES:
            raise ValidationError(f"{len(files)} files uploaded; the limit is {MAX_UPLOAD_FILES}.", param="files")
        names = [safe_upload_name(n) for n, _ in files]
        if len(set(names)) != len(names):
            raise ValidationError("Two uploaded files have the same name; rename one.", param="files")
        self.indexes_dir.mkdir(parents=True, exist_ok=True)
        staging = self.indexes_dir / f".upload-{name}-{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir()
            for fname, content in files:
                dest = staging / fname
                if isinstance(content, (bytes, bytearray)):
                    if len(content) > max_file_bytes:  # skipped for its size: a sparse placeholder says so
                        with dest.open("wb") as f:
                            f.truncate(len(content))
                    else:
                        dest.write_bytes(bytes(content))
                else:
                    shutil.copyfile(Path(content), dest)
            return self.build([staging], name, progress=progress, max_file_bytes=max_file_bytes, dense=dense)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def list(self) -> list[dict]:
        return idx.list_indexes(self.indexes_dir)

    def info(self, name: str | None = None) -> dict:
        """The manifest plus size on disk (no models loaded)."""
        name = self._name(name)

        def read(path: Path) -> dict:
            manifest = idx.read_manifest(path)
            return {**manifest, "summary": {**idx.summary(manifest, path),
                                            "path": str(idx.index_dir(self.indexes_dir, name))}}
        return self._current(name, read)

    def delete(self, name: str) -> None:
        name = idx.validate_name(name)
        idx.delete_index(self.indexes_dir, name)  # may wait for a build of it: not under self._lock
        with self._lock:
            self._cache.pop(name, None)

    def _path(self, name: str) -> Path:
        """The index's version folder, resolved once (never recovers: only a build, under its lock, does)."""
        path = idx.index_dir(self.indexes_dir, name)
        for _ in range(3):
            real = fsutil.current(path)
            if real is not None and (real / idx.MANIFEST).exists():
                return real
            if real is None or fsutil.current(path) == real:  # not just replaced by a rebuild
                break
        existing = ", ".join(i["name"] for i in self.list()) or "none yet"
        hint = ("The bundled roadmap index is built when the app starts, or with `llmspace index bundled`."
                if name == "roadmap" else f"Build it: `llmspace index build PATH --name {name}`.")
        raise NotFoundError(f"No index named {name!r}. {hint} Existing indexes: {existing}.", param="index")

    def retriever(self, name: str | None = None) -> Retriever:
        """The loaded index's retriever (cached; reloaded after a rebuild)."""
        name = self._name(name)
        return self._current(name, lambda path: self._load(name, path))

    def _current(self, name: str, read):
        """``read(version folder)``; again on the new version if a rebuild deleted this one meanwhile."""
        tries = 0
        while True:
            path = self._path(name)
            try:
                return read(path)
            except Exception:
                tries += 1
                if tries == 3 or fsutil.current(idx.index_dir(self.indexes_dir, name)) == path:
                    raise

    def _load(self, name: str, path: Path) -> Retriever:
        st = (path / idx.MANIFEST).stat()
        stamp = (str(path), st.st_ino, st.st_mtime_ns)  # a new version folder after each rebuild
        with self._lock:
            cached = self._cache.get(name)
            if cached and cached[0] == stamp:
                return cached[1]
            index = idx.RagIndex.load(path, embedding_model=self.settings.embedding_model)
            retriever = Retriever(index, self.services.embedder, self.reranker)
            self._cache[name] = (stamp, retriever)
            return retriever

    @property
    def reranker(self):
        if self.settings.reranker_model and self._reranker is None:
            from llmspace.device import pick_device

            self._reranker = load_reranker(self.settings.reranker_model, pick_device(self.settings.device))
        return self._reranker

    # ------------------------------------------------------------ queries
    def search(self, query: str, name: str | None = None, **params) -> list[SearchHit]:
        """``params``: ``RetrievalParams`` fields (mode, top_k, score_threshold, mmr_lambda, ...)."""
        return self.retriever(name).search(query, _retrieval_params(params))

    def answer(self, question: str, name: str | None = None, *, index: str | None = None, mode: str = "auto",
               max_tokens: int | None = None, params=None, user_key: str | None = None, online: bool = True,
               **retrieval) -> Answer:
        """A grounded, cited answer from index ``name`` (or ``index=``; default: settings.default_index).
        ``mode``: auto | generate | extractive. ``params`` (a ``GenerationParams``) may carry max_new_tokens
        and temperature instead of ``max_tokens``. ``retrieval``: ``RetrievalParams`` fields, with the
        retrieval mode as ``retrieval_mode``."""
        final = None
        for item in self.stream_answer(question, name, index=index, mode=mode, max_tokens=max_tokens,
                                       params=params, user_key=user_key, online=online, **retrieval):
            final = item
        return final

    def stream_answer(self, question: str, name: str | None = None, *, index: str | None = None,
                      mode: str = "auto", max_tokens: int | None = None, params=None, user_key: str | None = None,
                      online: bool = True, response_id: str | None = None,
                      **retrieval) -> Iterator[str | Answer]:
        """Text pieces, then the final ``Answer`` (see ``rag.answer.stream_answer``).

        Online (the default; eval runs pass ``online=False``): the A/B arm of
        ``user_key`` answers, its retrieval options over these, and the answer
        is recorded as ``response_id`` (``llmspace.evals.online.RecordedAnswer``,
        whose ``id`` and ``variant`` are set before the first item)."""
        if online:
            from llmspace.evals import online as ol

            arm = ol.choose_arm(self.services, user_key)
            rag = arm.services.rag if arm is not None else self
            name = rag._name(name or index)
            stream = rag.stream_answer(question, name, mode=mode, max_tokens=max_tokens, params=params,
                                       online=False, **ol.rag_retrieval(arm, retrieval))
            # with backend=remote the answering model is the remote's, not the local chat_model setting
            model = rag.services.engine.model_id if rag.settings.backend == "remote" else rag.settings.chat_model
            return ol.RecordedAnswer(self.services, stream, question=question, index=name, arm=arm,
                                     user_key=user_key, response_id=response_id, model=model)
        name = self._name(name or index)
        ap = AnswerParams(mode=mode)
        if params is not None:
            ap.max_new_tokens, ap.temperature = params.max_new_tokens, params.temperature
        if max_tokens is not None:
            ap.max_new_tokens = max_tokens
        ap.validate()
        rp = _retrieval_params(retrieval)
        engine = self._engine(mode)
        generate = None
        if engine is not None:  # RAG generations count in /metrics like chat ones
            def generate(messages, gen):
                return self.services.metrics.track(engine.model_id, engine.stream(messages, gen))
        return stream_answer(question, self.retriever(name), engine, index_name=name, retrieval=rp, params=ap,
                             generate=generate)

    def _engine(self, mode: str):
        return None if mode == "extractive" else self.services.engine

    def chunk(self, chunk_id: str, name: str | None = None) -> Chunk:
        index = self.retriever(name).index
        for c in index.chunks:
            if c.id == chunk_id:
                return c
        raise NotFoundError(f"No chunk {chunk_id!r} in index {index.name!r}.", param="chunk_id")

    def passage(self, chunk_id: str, name: str | None = None, context_chars: int = 300) -> dict:
        """A chunk in its document (text before, the chunk, text after) for citation previews."""
        index = self.retriever(name).index
        return {**index.passage(self.chunk(chunk_id, name), context_chars), "chunk_id": chunk_id}

    def documents(self, name: str | None = None) -> list[dict]:
        """Per document: source, title, language, chunks (from the manifest; no models loaded)."""
        m = self.info(name)
        return [{"source": src, **{k: f.get(k) for k in ("doc_id", "format", "lang", "chunks", "bytes")}}
                for src, f in m.get("files", {}).items()]


def _retrieval_params(params: dict) -> RetrievalParams:
    """``RetrievalParams`` from keyword options; in ``answer`` the retrieval mode
    is ``retrieval_mode`` (``mode`` there is the answer mode)."""
    params = dict(params)
    if "retrieval_mode" in params:
        params["mode"] = params.pop("retrieval_mode")
    fields = RetrievalParams.__dataclass_fields__
    unknown = [k for k in params if k not in fields]
    if unknown:
        raise ValidationError(f"Unknown retrieval option(s): {', '.join(unknown)}. Valid: {', '.join(fields)}.",
                              param=unknown[0])
    return RetrievalParams(**{k: v for k, v in params.items() if v is not None}).validate()
