"""onnxruntime-genai backend: the fast CPU path (a fused-op Llama graph with the GGUF's own 4-bit blocks).

The model folder comes from ``llmspace.export.genai.build_genai_model`` (``LLMSPACE_HOME/exports/<name>-genai``).
Prompts are tokenized by the same Hugging Face tokenizer as every other backend (the converted model's), so
token ids, chat template and eos handling match the torch and onnx backends; genai only computes logits.

The engine thread (``scheduler.py``) runs it through ``GenaiBatchOps``: each request owns one
``og.Generator`` (its KV cache lives inside genai, preallocated to ``prompt + max_new_tokens``), a decode
step feeds every running request its last token in turn, and requests join and leave between steps. Our
sampler picks the tokens from genai's logits, as on every backend. genai's own batching (a Generator with
``batch_size > 1``, or ``og.Engine``) is faster in total but changes greedy tokens (other kernels for
several rows, and static batches of at most 4 on CPU), so it is not used: several streams share this
backend's speed rather than multiply it. ``start()``/``GenaiSequence`` are the same steps for one sequence
outside the engine thread (parity checks).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from llmspace.config import Settings
from llmspace.engine.base import GenerationParams, Message
from llmspace.engine.common import LocalEngine, eos_ids, read_json
from llmspace.errors import LLMSpaceError, ModelLoadError, ModelNotFoundError

log = logging.getLogger("llmspace.engine")


def _new_generator(model, prompt_len: int, max_new_tokens: int):
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=prompt_len + max_new_tokens, do_sample=False)
    return og.Generator(model, params)


def _append_and_logits(gen, ids: list[int]):
    import numpy as np

    gen.append_tokens(np.asarray(ids, dtype=np.int32))
    return np.asarray(gen.get_logits(), dtype=np.float32).reshape(-1)


class GenaiBatchOps:
    """``scheduler.BatchOps`` over genai: the "cache" is the list of the running requests' generators,
    one per row, so joining, leaving and padding are list operations."""

    def __init__(self, model):
        self.model = model

    def prefill(self, ids: list[int], max_new_tokens: int):
        gen = _new_generator(self.model, len(ids), max_new_tokens)
        return _append_and_logits(gen, ids), [gen]

    def decode(self, tokens: list[int], cache: list, mask, positions: list[int]):
        import numpy as np

        return np.stack([_append_and_logits(gen, [tok]) for gen, tok in zip(cache, tokens)]), cache

    def pad_left(self, cache: list, n: int) -> list:
        return cache

    def concat(self, a: list, b: list) -> list:
        return a + b

    def take(self, cache: list, rows: list[int], start: int) -> list:
        return [cache[i] for i in rows]  # the others' generators (and caches) are freed


class GenaiSequence:
    """One request's generation state: an ``og.Generator`` fed token by token."""

    def __init__(self, model, prompt: list[int], max_new_tokens: int, choose: Callable):
        self._gen = _new_generator(model, len(prompt), max_new_tokens)
        self._pending = list(prompt)
        self._choose = choose
        self.max_new_tokens = max_new_tokens
        self.generated: list[int] = []

    @property
    def done(self) -> bool:
        return len(self.generated) >= self.max_new_tokens or self._gen is None

    def step(self) -> int:
        """One forward pass; the next token id (greedy unless ``choose`` samples)."""
        if self.done:
            raise RuntimeError("this sequence is finished")
        logits = _append_and_logits(self._gen, self._pending)
        tok = int(self._choose(logits))
        self.generated.append(tok)
        self._pending = [tok]
        return tok

    def close(self) -> None:
        self._gen = None  # genai frees the cache with the Generator


class GenaiEngine(LocalEngine):
    backend = "genai"

    def __init__(self, settings: Settings, model: str | None = None, folder: Path | None = None):
        self.settings = settings
        self.model_id = model or settings.chat_model
        self.folder = Path(folder) if folder else None
        self.context_window = 2048
        self.load_seconds: float | None = None
        self.weight_format = "gguf-q4_1 (MatMulNBits 4-bit) + q8_0 lm_head"
        self._model = None
        self._tok = None
        self._eos_ids: set[int] = set()
        self._load_lock = threading.Lock()

    # ------------------------------------------------------------ loading
    def load(self) -> "GenaiEngine":
        if self._model is not None:
            return self
        with self._load_lock:
            if self._model is not None:
                return self
            t0 = time.perf_counter()
            try:
                import onnxruntime_genai as og
            except ImportError as exc:
                raise ModelLoadError("The genai backend needs onnxruntime-genai: `pip install onnxruntime-genai`.") from exc
            from llmspace.export.genai import META_FILE, genai_export_dir
            from llmspace.fsutil import current

            folder = self.folder or current(genai_export_dir(self.settings, self.model_id))
            if folder is None and self.folder is None:  # first use: build it (about 20 s, no network)
                from llmspace.export.genai import build_genai_model

                log.info("building the genai model of %s (once, about 20 s) ...", self.model_id)
                try:
                    folder = build_genai_model(self.settings, self.model_id, say=log.info)
                except LLMSpaceError:
                    raise
                except Exception as exc:
                    raise ModelLoadError(f"Could not build the genai model of {self.model_id!r}: {exc}") from exc
            if folder is None or not (folder / "genai_config.json").exists():
                raise ModelNotFoundError(
                    f"No genai model for {self.model_id!r} (looked for {genai_export_dir(self.settings, self.model_id)}). "
                    "Build it once (no network): `llmspace export genai`.")
            meta = read_json(folder / META_FILE)
            config = og.Config(str(folder))
            if self.settings.threads:
                config.overlay(json.dumps({"model": {"decoder": {"session_options": {
                    "intra_op_num_threads": self.settings.threads}}}}))
            try:
                model = og.Model(config)
            except Exception as exc:  # genai raises RuntimeError with onnxruntime's message
                raise ModelLoadError(f"onnxruntime-genai could not load {folder}: {exc}") from exc
            from transformers import AutoTokenizer

            source = Path(meta.get("source", ""))
            tok_dir = source if (source / "tokenizer_config.json").exists() else folder
            tok = AutoTokenizer.from_pretrained(str(tok_dir))
            if tok.chat_template is None:
                raise ModelLoadError(f"The tokenizer in {tok_dir} has no chat template.")
            genai_config = read_json(folder / "genai_config.json").get("model", {})
            self.context_window = int(read_json(tok_dir / "config.json").get("max_position_embeddings")
                                      or genai_config.get("context_length") or 2048)
            self._eos_ids = eos_ids(tok, genai_config.get("eos_token_id"))
            self._tok, self._model, self.folder = tok, model, folder
            self.load_seconds = time.perf_counter() - t0
        return self

    def _batch_ops(self) -> GenaiBatchOps:
        self.load()
        return GenaiBatchOps(self._model)

    # ------------------------------------------------------------ one sequence outside the engine thread
    def start(self, prompt: list[int], params: GenerationParams, choose: Callable | None = None) -> GenaiSequence:
        """A new sequence for ``prompt``; call ``step()`` for each token (the first call is the prefill).
        ``choose(logits) -> token id`` replaces the sampler (e.g. to feed a reference continuation)."""
        from llmspace.engine.sampling import make_rng, sample_next

        self.load()
        if choose is None:
            rng = make_rng(params.seed)
            choose = lambda logits: sample_next(logits, params, rng)  # noqa: E731
        return GenaiSequence(self._model, prompt, params.max_new_tokens, choose)

    @property
    def eos_ids(self) -> set[int]:
        self.load()
        return set(self._eos_ids)

    def greedy_ids(self, messages: list[Message], max_new_tokens: int) -> list[int]:
        """Greedy token ids (up to and excluding eos), one sequence stepped on this thread."""
        seq = self.start(self.encode_prompt(messages), GenerationParams(max_new_tokens=max_new_tokens))
        out: list[int] = []
        try:
            while not seq.done:
                tid = seq.step()
                if tid in self._eos_ids:
                    break
                out.append(tid)
        finally:
            seq.close()
        return out
