"""Sentence embeddings (all-MiniLM-L6-v2 by default), loaded lazily, once.

Shared by RAG (indexing and queries) and the API's embeddings (``embed_request``:
HTTP ``/v1/embeddings`` and gRPC ``Embed``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmspace.config import Settings
from llmspace.errors import ModelNotFoundError, ValidationError


class Embedder:
    """Unit-normalised sentence embeddings as float32 numpy arrays."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.name = settings.embedding_model
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    from llmspace import models
                    from llmspace.device import pick_device

                    path = models.resolve(self.name, "embedding", self.settings.models_dir)
                    self._model = SentenceTransformer(str(path), device=pick_device(self.settings.device))
        return self._model

    @property
    def dimension(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed(self, texts: list[str], batch_size: int = 32, show_progress: bool = False):
        """``(len(texts), dim)`` float32, each row of unit L2 norm."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vecs = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=show_progress)
        return vecs.astype(np.float32, copy=False)

    @property
    def path(self) -> Path | str:
        from llmspace import models

        return models.resolve(self.name, "embedding", self.settings.models_dir)


@dataclass
class EmbeddingResult:
    vectors: Any  # (n, dim) float32 numpy array, rows of unit norm
    model: str
    prompt_tokens: int


def check_embedding_model(services, name: str | None) -> None:
    """Accept the served embedding model's name, its registry aliases, or nothing."""
    if not name:
        return
    from llmspace import models

    served = services.embedder.name
    asked, spec = models.lookup(name), models.lookup(served)  # None: not a registry name
    if name != served and not (asked and spec and asked.name == spec.name):
        raise ModelNotFoundError(f"The embedding model {name!r} is not served here; this server serves "
                                 f"{served!r} (GET /v1/models lists it).")


def embed_request(services, texts, model: str | None = None, *, param: str = "input") -> EmbeddingResult:
    """What every shell's embeddings request goes through (HTTP ``/v1/embeddings``, gRPC ``Embed``):
    the model name, the per-request bounds, the embedding, its token count and metrics. ``param``
    names the request field in error messages. Raises ``LLMSpaceError``."""
    check_embedding_model(services, model)
    limits = services.settings
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValidationError(f"`{param}` is empty.", param=param)
    if len(texts) > limits.embedding_max_inputs:
        raise ValidationError(f"`{param}` has {len(texts)} items; the limit is {limits.embedding_max_inputs} "
                              "(LLMSPACE_EMBEDDING_MAX_INPUTS). Send them in several requests.", param=param)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValidationError(f"{param}[{i}] must be a string (token arrays are not supported).",
                                  param=f"{param}[{i}]")
        if not t.strip():
            raise ValidationError(f"{param}[{i}] is empty.", param=f"{param}[{i}]")
        if len(t) > limits.embedding_max_input_chars:
            raise ValidationError(f"{param}[{i}] has {len(t)} characters; the limit is "
                                  f"{limits.embedding_max_input_chars} (LLMSPACE_EMBEDDING_MAX_INPUT_CHARS). "
                                  "Split the text into chunks first.", param=f"{param}[{i}]")
    emb = services.embedder
    vecs = emb.embed(texts)
    n_tokens = sum(emb.count_tokens(t) for t in texts)
    services.metrics.embedding_inputs.labels(emb.name).inc(len(texts))
    return EmbeddingResult(vecs, emb.name, n_tokens)
