"""PyTorch backend: a transformers model, decoded step by step by the engine thread.

We decode token by token with the KV cache rather than calling ``generate`` so
that one loop gives streaming, stop strings, exact usage counts, time to first
token and continuous batching (``scheduler.py``): a prompt is prefilled alone,
then its cache joins the batch left-padded, and each step runs every active row
in one forward pass with an attention mask and per-row positions.

Grad mode is per thread: the parameters never require grad, and each forward
call runs under ``inference_mode`` (on the engine thread, the only one that
runs the model).
"""

from __future__ import annotations

import inspect
import threading
import time

from llmspace.config import Settings
from llmspace.engine.common import LocalEngine, eos_ids
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
            self._eos_ids = eos_ids(tok, getattr(model.generation_config, "eos_token_id", None))
            # prefill needs the last position's logits only (a (prompt, vocab) float tensor otherwise)
            self._keep_last = ({"logits_to_keep": 1}
                               if "logits_to_keep" in inspect.signature(model.forward).parameters else {})
            self._model = model
            self.load_seconds = time.perf_counter() - t0
        return self

    @property
    def weight_format(self) -> str:
        """What the weights are computed in (the packaged GGUF's Q4_1 weights are dequantized on conversion)."""
        import torch

        from llmspace.device import pick_device, pick_dtype

        dtype = self._model.dtype if self._model is not None else pick_dtype(pick_device(self.settings.device),
                                                                             self.settings.dtype)
        return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))

    def _batch_ops(self) -> "TorchBatchOps":
        self.load()
        return TorchBatchOps(self._model, self._device, self._keep_last)

    def _on_engine_thread(self) -> None:
        if self.settings.threads:
            import torch

            torch.set_num_threads(self.settings.threads)


class TorchBatchOps:
    """Prefill and batched decode over a transformers causal LM (see ``scheduler.BatchOps``)."""

    def __init__(self, model, device, keep_last: dict):
        self.model, self.device, self.keep_last = model, device, keep_last

    @staticmethod
    def _layers(cache) -> list:
        if hasattr(cache, "layers"):
            return [(layer.keys, layer.values) for layer in cache.layers]
        return [tuple(kv) for kv in cache]  # a legacy tuple cache

    def prefill(self, ids: list[int], max_new_tokens: int | None = None):
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, **self.keep_last)
            logits = out.logits[0, -1].float().cpu().numpy().copy()  # (vocab,), owns its memory
        return logits, self._layers(out.past_key_values)

    def decode(self, tokens: list[int], cache: list, mask, positions: list[int]):
        import torch
        from transformers import DynamicCache

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor(tokens, device=self.device)[:, None],
                attention_mask=torch.from_numpy(mask).to(self.device),
                position_ids=torch.tensor(positions, device=self.device)[:, None],
                past_key_values=DynamicCache(ddp_cache_data=cache), use_cache=True)
            logits = out.logits[:, -1].float().cpu().numpy()
        return logits, self._layers(out.past_key_values)

    def pad_left(self, cache: list, n: int) -> list:
        import torch.nn.functional as F

        return [(F.pad(k, (0, 0, n, 0)), F.pad(v, (0, 0, n, 0))) for k, v in cache]

    def concat(self, a: list, b: list) -> list:
        import torch

        return [(torch.cat([ka, kb]), torch.cat([va, vb])) for (ka, va), (kb, vb) in zip(a, b)]

    def take(self, cache: list, rows: list[int], start: int) -> list:
        import torch

        idx = torch.tensor(rows, device=self.device)
        return [(k.index_select(0, idx)[:, :, start:], v.index_select(0, idx)[:, :, start:]) for k, v in cache]
