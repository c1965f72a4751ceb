"""PyTorch backend: transformers model, a hand-written decode loop.

We decode token by token with the KV cache rather than calling ``generate``
so that one loop gives us streaming, stop strings, exact usage counts and time
to first token, identically for greedy and sampled decoding.

Grad mode is per thread, and a server steps a sync generator on whichever pool
thread is free: so the parameters never require grad, and each forward call (not
the generator around it) runs under ``inference_mode``.
"""

from __future__ import annotations

import inspect
import threading
import time
from typing import Iterator

from llmspace.config import Settings
from llmspace.engine.base import GenerationParams
from llmspace.engine.common import LocalEngine
from llmspace.errors import ModelLoadError


class TorchEngine(LocalEngine):
    backend = "torch"

    def __init__(self, settings: Settings, model: str | None = None):
        self.settings = settings
        self.model_id = model or settings.chat_model
        self._model = None
        self._tok = None
        self._device = None
        self.context_window = 2048
        self.load_seconds: float | None = None
        # One generation at a time per model: batching concurrent requests is
        # the fast-backend issue's job, not this loop's.
        self._gen_lock = threading.Lock()
        self._load_lock = threading.Lock()

    # ------------------------------------------------------------- loading
    def load(self) -> "TorchEngine":
        if self._model is not None:
            return self
        with self._load_lock:
            if self._model is not None:
                return self
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from llmspace import models
            from llmspace.device import pick_device, pick_dtype

            t0 = time.perf_counter()
            path = models.resolve(self.model_id, "chat", self.settings.models_dir)
            if self.settings.threads:
                torch.set_num_threads(self.settings.threads)
            device = pick_device(self.settings.device)
            dtype = pick_dtype(device, self.settings.dtype)
            try:
                tok = AutoTokenizer.from_pretrained(path)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            except OSError as exc:
                raise ModelLoadError(f"Could not load chat model {self.model_id!r} from {path}: {exc}") from exc
            model.to(device).eval()
            model.requires_grad_(False)  # no autograd graph whatever the stepping thread's grad mode
            if tok.chat_template is None:
                raise ModelLoadError(f"{self.model_id!r} has no chat template; pick an instruct/chat model.")
            spec = models.lookup(self.model_id)
            self.context_window = (spec.context_window if spec else None) or int(
                getattr(model.config, "max_position_embeddings", 2048))
            self._tok, self._device = tok, device
            self._eos_ids = _eos_ids(tok, model)
            # prefill needs the last position's logits only (a (prompt, vocab) float tensor otherwise)
            self._keep_last = ({"logits_to_keep": 1}
                               if "logits_to_keep" in inspect.signature(model.forward).parameters else {})
            self._model = model
            self.load_seconds = time.perf_counter() - t0
        return self

    def _token_ids(self, prompt: list[int], params: GenerationParams) -> Iterator[int]:
        """Chosen token ids, one forward pass each, reusing the KV cache (lazy:
        the consumer stops it at eos or a stop string)."""
        import torch

        from llmspace.engine.sampling import make_rng, sample_next

        rng = make_rng(params.seed)
        past = None
        input_ids = torch.tensor([prompt], device=self._device)
        for _ in range(params.max_new_tokens):
            # per call, never around the yield: the next step may run on another thread
            with torch.inference_mode():
                result = self._model(input_ids=input_ids, past_key_values=past, use_cache=True, **self._keep_last)
                logits = result.logits[0, -1].float().cpu().numpy().copy()  # (vocab,), owns its memory
            past = result.past_key_values
            del result
            next_id = sample_next(logits, params, rng)
            yield next_id
            input_ids = torch.tensor([[next_id]], device=self._device)


def _eos_ids(tok, model) -> set[int]:
    ids: set[int] = set()
    for v in (tok.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        ids.add(im_end)
    return ids
