"""onnxruntime-genai backend: the fast CPU path (a fused-op Llama graph with the GGUF's own 4-bit blocks).

The model folder comes from ``llmspace.export.genai.build_genai_model`` (``LLMSPACE_HOME/exports/<name>-genai``).
Prompts are tokenized by the same Hugging Face tokenizer as every other backend (the converted model's), so
token ids, chat template and eos handling match the torch and onnx backends; genai only computes logits.

Low-level interface for a scheduler (the engine thread): ``start(prompt_ids, params)`` returns a
``GenaiSequence`` that owns one ``og.Generator`` (its KV cache lives inside genai, preallocated to
``prompt + max_new_tokens``); ``seq.step()`` runs one forward pass (the prompt on the first call, then the
last chosen token) and returns the next token id; ``seq.close()`` frees the cache. Sequences are
independent, so a scheduler interleaves their steps between requests (a request joins and leaves between
steps). genai's own batching (a Generator with ``batch_size > 1``, or ``og.Engine``) is faster in total but
changes greedy tokens (other kernels for several rows), so it is not used.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from llmspace.config import Settings
from llmspace.engine.base import Delta, GenerationParams, Message
from llmspace.errors import ModelLoadError, ModelNotFoundError


class GenaiSequence:
    """One request's generation state: an ``og.Generator`` fed token by token."""

    def __init__(self, model, prompt: list[int], max_new_tokens: int, choose: Callable):
        import onnxruntime_genai as og

        self._og = og
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(prompt) + max_new_tokens, do_sample=False)
        self._gen = og.Generator(model, params)
        self._pending = list(prompt)
        self._choose = choose
        self.max_new_tokens = max_new_tokens
        self.generated: list[int] = []

    @property
    def done(self) -> bool:
        return len(self.generated) >= self.max_new_tokens or self._gen is None

    def step(self) -> int:
        """One forward pass; the next token id (greedy unless ``choose`` samples)."""
        import numpy as np

        if self.done:
            raise RuntimeError("this sequence is finished")
        self._gen.append_tokens(np.asarray(self._pending, dtype=np.int32))
        logits = np.asarray(self._gen.get_logits(), dtype=np.float32).reshape(-1)
        tok = int(self._choose(logits))
        self.generated.append(tok)
        self._pending = [tok]
        return tok

    def close(self) -> None:
        self._gen = None  # genai frees the cache with the Generator


class GenaiEngine:
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
        self._gen_lock = threading.Lock()  # until the engine thread owns this model: one generation at a time

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
            if folder is None or not (folder / "genai_config.json").exists():
                raise ModelNotFoundError(
                    f"No genai model for {self.model_id!r} (looked for {genai_export_dir(self.settings, self.model_id)}). "
                    "Build it once (no network): `python -c \"from llmspace.config import Settings; "
                    "from llmspace.export.genai import build_genai_model; build_genai_model(Settings.load())\"`.")
            meta = _read_json(folder / META_FILE)
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
            genai_config = _read_json(folder / "genai_config.json").get("model", {})
            self.context_window = int(_read_json(tok_dir / "config.json").get("max_position_embeddings")
                                      or genai_config.get("context_length") or 2048)
            self._eos_ids = _eos_ids(tok, genai_config)
            self._tok, self._model, self.folder = tok, model, folder
            self.load_seconds = time.perf_counter() - t0
        return self

    @property
    def tokenizer(self):
        self.load()
        return self._tok

    # ------------------------------------------------------------ what a scheduler uses
    def encode_prompt(self, messages: list[Message]) -> list[int]:
        ids = self.tokenizer.apply_chat_template([m.to_dict() for m in messages], add_generation_prompt=True,
                                                 tokenize=True)
        if isinstance(ids, dict):
            ids = ids["input_ids"]
        return list(ids)

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

    # ------------------------------------------------------------ the engine protocol (one request at a time)
    def count_prompt_tokens(self, messages: list[Message]) -> int:
        return len(self.encode_prompt(messages))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _token_ids(self, prompt: list[int], params: GenerationParams) -> Iterator[int]:
        with self._gen_lock:
            seq = self.start(prompt, params)
            try:
                while not seq.done:
                    yield seq.step()
            finally:
                seq.close()

    def greedy_ids(self, messages: list[Message], max_new_tokens: int) -> list[int]:
        out = []
        for tid in self._token_ids(self.encode_prompt(messages), GenerationParams(max_new_tokens=max_new_tokens)):
            if tid in self._eos_ids:
                break
            out.append(tid)
        return out

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[Delta]:
        from llmspace.engine.common import check_context, stream_deltas

        self.load()
        prompt = self.encode_prompt(messages)
        check_context(len(prompt), params.max_new_tokens, self.context_window)
        return stream_deltas(self._token_ids(prompt, params), len(prompt), self._tok, self._eos_ids, params)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _eos_ids(tok, genai_model_config: dict) -> set[int]:
    ids: set[int] = set()
    for v in (tok.eos_token_id, genai_model_config.get("eos_token_id")):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        ids.add(im_end)
    return ids
