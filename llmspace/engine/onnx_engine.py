"""ONNX Runtime backend: serves a folder written by ``llmspace export onnx``.

The decode loop is the PyTorch backend's, over an onnxruntime session of the
Optimum ``text-generation-with-past`` graph: inputs ``input_ids``,
``attention_mask``, ``position_ids`` and ``past_key_values.{i}.key/value``
(batch, kv_heads, past_len, head_dim); outputs ``logits`` and ``present.*``.
Writing the loop ourselves (rather than Optimum's ``ORTModelForCausalLM``)
keeps torch out of this backend and gives streaming, stop strings and exact
usage counts the same way as every other backend. It is also the reference the
browser test compares Transformers.js against, token for token.

Which file: ``LLMSPACE_CHAT_MODEL`` names an export (a folder under
``LLMSPACE_HOME/exports``, a registry name exported there, or any export
folder), optionally with ``:fp32``, ``:q8``, ``:q4`` or ``:int8``; or a ``.onnx`` file
inside an export. Without a dtype, q8 is served when present (fastest on CPU),
then fp32, then q4.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from llmspace.config import Settings
from llmspace.engine.base import Message
from llmspace.engine.common import LocalEngine, eos_ids, read_json
from llmspace.errors import ModelLoadError, ModelNotFoundError
from llmspace.export.layout import DTYPE_FILES

PREFERENCE = ("q8", "fp32", "q4", "int8")


def resolve_export(ref: str, exports_dir: Path, dtype: str | None = None) -> tuple[Path, str]:
    """(export folder, dtype) for a model reference; errors say how to make the export."""
    base, _, suffix = ref.rpartition(":")
    if base and suffix in DTYPE_FILES:
        ref, dtype = base, dtype or suffix
    path = Path(ref).expanduser()
    if path.suffix == ".onnx" and path.is_file():
        by_file = {v: k for k, v in DTYPE_FILES.items()}
        if path.name not in by_file:
            raise ModelNotFoundError(f"{path.name} is not an export file ({', '.join(DTYPE_FILES.values())}).")
        return path.resolve().parent.parent, dtype or by_file[path.name]
    candidates = [path, Path(exports_dir) / ref]
    from llmspace import models

    spec = models.lookup(ref)
    if spec is not None:
        candidates.append(Path(exports_dir) / spec.name)
    folder = next((c for c in candidates if (c / "onnx").is_dir()), None)
    if folder is None:
        name = spec.name if spec else Path(ref).name
        raise ModelNotFoundError(
            f"No ONNX export found for {ref!r} (looked in {', '.join(str(c) for c in candidates)}). "
            f"Export it first: `llmspace export onnx --model {ref} --out {Path(exports_dir) / name}`, "
            "or set LLMSPACE_CHAT_MODEL to an export folder.")
    present = [d for d in DTYPE_FILES if (folder / "onnx" / DTYPE_FILES[d]).exists()]
    if dtype is None:
        dtype = next((d for d in PREFERENCE if d in present), None)
    if dtype not in present:
        raise ModelNotFoundError(f"{folder} has no {dtype} file (has: {', '.join(present) or 'none'}). "
                                 f"Re-export with `llmspace export onnx --dtype {dtype or 'fp32'}`.")
    return folder.resolve(), dtype


class OrtCausalLM:
    """One onnxruntime session of an exported decoder, with its KV cache plumbing."""

    def __init__(self, onnx_file: Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types (Fail, InvalidGraph, ...)
            raise ModelLoadError(f"onnxruntime could not load {onnx_file}: {exc}") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        self.past_shape = {n: inputs[n].shape for n in self.past_names}  # [batch, heads, past, head_dim]
        self.float_type = "float16" if any("float16" in inputs[n].type for n in self.past_names) else "float32"
        self.uses_position_ids = "position_ids" in inputs
        self.output_names = [o.name for o in self.session.get_outputs()]

    def empty_past(self) -> dict:
        import numpy as np

        return {n: np.zeros((1, s[1], 0, s[3]), dtype=self.float_type) for n, s in self.past_shape.items()}

    def _run(self, ids: list[int], past: dict, past_len: int) -> tuple:
        """The raw logits ``(1, len(ids), vocab)`` (the graph's dtype, every position) and the new cache."""
        import numpy as np

        total = past_len + len(ids)
        feed = {"input_ids": np.array([ids], dtype=np.int64),
                "attention_mask": np.ones((1, total), dtype=np.int64), **past}
        if self.uses_position_ids:
            feed["position_ids"] = np.arange(past_len, total, dtype=np.int64)[None, :]
        outs = dict(zip(self.output_names, self.session.run(None, feed)))
        new_past = {n: outs[n.replace("past_key_values", "present")] for n in self.past_names}
        return outs["logits"], new_past

    def forward(self, ids: list[int], past: dict, past_len: int):
        """Logits ``(len(ids), vocab)`` for ``ids`` following ``past_len`` cached tokens, and the new cache
        (every position: for parity checks; decoding uses ``next_logits``)."""
        import numpy as np

        logits, new_past = self._run(ids, past, past_len)
        return logits[0].astype(np.float32), new_past

    def next_logits(self, ids: list[int], past: dict, past_len: int):
        """Logits ``(vocab,)`` float32 of the last position only, and the new cache. The exported graph
        returns every position; the row is cut before any copy, so a long prompt's prefill never makes
        a float32 copy of a (prompt, vocab) array."""
        import numpy as np

        logits, new_past = self._run(ids, past, past_len)
        return logits[0, -1].astype(np.float32), new_past

    def token_ids(self, prompt: list[int], max_new_tokens: int,
                  choose: Callable | None = None) -> Iterator[int]:
        """Next tokens one by one (greedy unless ``choose`` picks from the logits); the caller stops it."""
        import numpy as np

        choose = choose or (lambda logits: int(np.argmax(logits)))
        past, done, ids = self.empty_past(), 0, list(prompt)
        for _ in range(max_new_tokens):
            logits, past = self.next_logits(ids, past, done)
            done += len(ids)
            nxt = choose(logits)
            yield nxt
            ids = [nxt]


class OnnxEngine(LocalEngine):
    backend = "onnx"

    def __init__(self, settings: Settings, model: str | None = None, dtype: str | None = None):
        self.settings = settings
        self.model_id = model or settings.chat_model
        self._requested_dtype = dtype
        self.folder: Path | None = None
        self.dtype: str | None = None
        self.context_window = 2048
        self.load_seconds: float | None = None
        self._model: OrtCausalLM | None = None
        self._tok = None
        self._load_lock = threading.Lock()

    def load(self) -> "OnnxEngine":
        if self._model is not None:
            return self
        with self._load_lock:
            if self._model is not None:
                return self
            t0 = time.perf_counter()
            folder, dtype = resolve_export(self.model_id, self.settings.exports_dir, self._requested_dtype)
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(str(folder))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"Could not load the tokenizer of the export {folder}: {exc}") from exc
            if tok.chat_template is None:
                raise ModelLoadError(f"The export {folder} has no chat template in tokenizer_config.json; "
                                     "re-export it with `llmspace export onnx`.")
            config = json.loads((folder / "config.json").read_text())
            gen = read_json(folder / "generation_config.json")
            self.context_window = int(config.get("max_position_embeddings") or 2048)
            self._eos_ids = eos_ids(tok, gen.get("eos_token_id"), config.get("eos_token_id"))
            self._tok, self.folder, self.dtype = tok, folder, dtype
            self._model = OrtCausalLM(folder / "onnx" / DTYPE_FILES[dtype], threads=self.settings.threads)
            self.load_seconds = time.perf_counter() - t0
        return self

    def greedy_ids(self, messages: list[Message], max_new_tokens: int) -> list[int]:
        """Greedy token ids (up to and excluding eos): what a browser run must reproduce."""
        self.load()
        out = []
        for tid in self._model.token_ids(self.encode_prompt(messages), max_new_tokens):
            if tid in self._eos_ids:
                break
            out.append(tid)
        return out

    @property
    def weight_format(self) -> str:
        """The export file served: fp32, q8, q4 or int8 (chosen at load when not asked for)."""
        return self.dtype or self._requested_dtype or "auto"

    def _batch_ops(self) -> "OrtBatchOps":
        self.load()
        return OrtBatchOps(self._model)


class OrtBatchOps:
    """Prefill and batched decode over an ``OrtCausalLM`` (see ``scheduler.BatchOps``): the Optimum graph
    takes a left-padded batch through ``attention_mask`` and per-row ``position_ids``."""

    def __init__(self, lm: OrtCausalLM):
        self.lm = lm
        layers = sorted({int(n.split(".")[1]) for n in lm.past_names})
        self.names = [(f"past_key_values.{i}.key", f"past_key_values.{i}.value") for i in layers]

    def _to_cache(self, past: dict) -> list:
        return [(past[k], past[v]) for k, v in self.names]

    def prefill(self, ids: list[int], max_new_tokens: int | None = None):
        logits, past = self.lm.next_logits(ids, self.lm.empty_past(), 0)
        return logits, self._to_cache(past)

    def decode(self, tokens: list[int], cache: list, mask, positions: list[int]):
        import numpy as np

        lm = self.lm
        feed = {"input_ids": np.array(tokens, dtype=np.int64)[:, None], "attention_mask": mask}
        for (kn, vn), (k, v) in zip(self.names, cache):
            feed[kn], feed[vn] = k, v
        if lm.uses_position_ids:
            feed["position_ids"] = np.array(positions, dtype=np.int64)[:, None]
        outs = dict(zip(lm.output_names, lm.session.run(None, feed)))
        new = [(outs[kn.replace("past_key_values", "present")], outs[vn.replace("past_key_values", "present")])
               for kn, vn in self.names]
        return outs["logits"][:, -1].astype(np.float32), new

    def pad_left(self, cache: list, n: int) -> list:
        import numpy as np

        w = ((0, 0), (0, 0), (n, 0), (0, 0))
        return [(np.pad(k, w), np.pad(v, w)) for k, v in cache]

    def concat(self, a: list, b: list) -> list:
        import numpy as np

        return [(np.concatenate([ka, kb]), np.concatenate([va, vb])) for (ka, va), (kb, vb) in zip(a, b)]

    def take(self, cache: list, rows: list[int], start: int) -> list:
        import numpy as np

        return [(np.ascontiguousarray(k[rows, :, start:]), np.ascontiguousarray(v[rows, :, start:])) for k, v in cache]
