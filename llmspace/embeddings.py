"""Sentence embeddings (all-MiniLM-L6-v2 by default), loaded lazily, once.

Shared by RAG (indexing and queries) and the API's ``/v1/embeddings``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from llmspace.config import Settings


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
