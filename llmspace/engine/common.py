"""Pieces every backend shares: context checks and stop-string handling."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Iterator

from llmspace.engine.base import Delta, GenerationParams, Message, Usage
from llmspace.errors import ContextLengthError


def check_context(prompt_tokens: int, max_new_tokens: int, context_window: int) -> None:
    """Reject a prompt that leaves no room, saying by how much it is over."""
    if prompt_tokens >= context_window:
        raise ContextLengthError(
            f"The prompt is {prompt_tokens} tokens; the model's context window is {context_window} "
            f"tokens, so it is {prompt_tokens - context_window + 1} tokens too long. Shorten the messages."
        )
    if prompt_tokens + max_new_tokens > context_window:
        room = context_window - prompt_tokens
        raise ContextLengthError(
            f"The prompt is {prompt_tokens} tokens and max_tokens is {max_new_tokens}: "
            f"{prompt_tokens + max_new_tokens} in all, over the context window of {context_window} "
            f"by {prompt_tokens + max_new_tokens - context_window}. Ask for at most {room} new tokens "
            f"or shorten the messages.",
            param="max_tokens",
        )


class StopMatcher:
    """Streams text while watching for stop strings.

    Text that could be the start of a stop string is held back until it is
    clear either way, so a stop string never leaks into the output.
    """

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.buffer = ""

    def feed(self, new: str) -> tuple[str, bool]:
        """Add new text; return (text safe to emit, whether a stop string was hit)."""
        self.buffer += new
        if not self.stops:
            out, self.buffer = self.buffer, ""
            return out, False
        cut = min((i for i in (self.buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.buffer = self.buffer[:cut], ""
            return out, True
        hold = 0  # longest buffer suffix that is a proper prefix of some stop
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buffer)), 0, -1):
                if self.buffer.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        out = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(self.buffer) - hold:]
        return out, False

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out


def stream_deltas(token_ids: Iterable[int], prompt_len: int, tokenizer, eos_ids: set[int],
                  params: GenerationParams, t0: float | None = None) -> Iterator[Delta]:
    """Turn a backend's lazy stream of chosen token ids into text deltas.

    Shared by every local backend: stops at eos or a stop string, never emits
    half a multi-byte character, and ends with a delta carrying finish reason,
    usage and timings (queue time, ttft, total, decode tok/s after the first
    token; ttft and total count from ``t0``, the submission, so they include the
    queue). A ``WAITING`` id (the request is still queued) becomes an empty
    ``waiting`` delta. ``token_ids`` is closed (if it can be) as soon as no more
    tokens are wanted, before the last text and the final delta are yielded; an
    engine that ended the request itself says why in ``token_ids.finish_reason``.
    """
    from llmspace.engine.scheduler import WAITING

    stops = StopMatcher(params.stop)
    t0 = time.monotonic() if t0 is None else t0
    ttft, finish, emitted, out_ids, hit = None, "length", "", [], False
    backlog = getattr(token_ids, "backlog", None)

    def text_so_far() -> str | None:
        """New text of the ids so far (None while they end inside a multi-byte character)."""
        text = tokenizer.decode(out_ids, skip_special_tokens=True)
        return None if text.endswith("\ufffd") else text

    try:
        for tid in token_ids:
            if tid == WAITING:
                yield Delta("", waiting=True)
                continue
            if tid in eos_ids:
                finish = "stop"
                break
            out_ids.append(tid)
            if ttft is None:
                ttft = time.monotonic() - t0
            if backlog is not None and backlog():  # a reader behind the engine: decode the waiting ids together
                continue
            text = text_so_far()
            if text is None:
                continue
            new, hit = stops.feed(text[len(emitted):])
            emitted = text
            if new:
                yield Delta(new)
            if hit:
                finish = "stop"
                break
        else:
            if getattr(token_ids, "finish_reason", None) in ("timeout", "cancelled"):
                finish = token_ids.finish_reason
    finally:  # the source stops here (done, or our reader left): the engine drops the request now
        close = getattr(token_ids, "close", None)
        if close is not None:
            close()
    text = None if hit else text_so_far()  # ids skipped above while the reader caught up
    if text is not None and len(text) > len(emitted):
        new, hit = stops.feed(text[len(emitted):])
        if hit:
            finish = "stop"
        if new:
            yield Delta(new)
    tail = stops.flush()
    if tail:
        yield Delta(tail)
    total = time.monotonic() - t0
    n = len(out_ids)
    timings = {
        "ttft_s": round(ttft if ttft is not None else total, 4),
        "total_s": round(total, 4),
        # decode speed after the first token (prefill excluded), as vLLM reports it
        "tokens_per_s": round((n - 1) / (total - ttft), 2) if n > 1 and ttft and total > ttft else 0.0,
    }
    queue_s = getattr(token_ids, "queue_s", None)
    if queue_s is not None:
        timings["queue_s"] = round(queue_s, 4)
    yield Delta("", finish_reason=finish, usage=Usage(prompt_tokens=prompt_len, completion_tokens=n), timings=timings)


def read_json(path: Path) -> dict:
    """A JSON file's object, or {} when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def eos_ids(tok, *declared) -> set[int]:
    """Token ids that end an answer: the tokenizer's eos, each declared ``eos_token_id`` (an int or a list)
    and ``<|im_end|>`` where the vocabulary has it (ChatML models such as SmolLM2)."""
    ids: set[int] = set()
    for v in (tok.eos_token_id, *declared):
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, (list, tuple)):
            ids.update(int(x) for x in v)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tok.unk_token_id:
        ids.add(im_end)
    return ids


class LocalEngine:
    """What the in-process backends (torch, onnx) share: chat-template prompts,
    token counts, the context check, and the engine thread (``scheduler.py``)
    that owns the model and batches concurrent requests.

    A subclass sets ``settings``, ``_tok``, ``_eos_ids``, ``context_window`` and
    ``_load_lock`` in ``load()``/``__init__`` and implements ``_batch_ops()``.
    """

    _scheduler = None

    @property
    def tokenizer(self):
        self.load()
        return self._tok

    def encode_prompt(self, messages: list[Message]) -> list[int]:
        ids = self.tokenizer.apply_chat_template([m.to_dict() for m in messages], add_generation_prompt=True,
                                                 tokenize=True)
        if isinstance(ids, dict):  # some tokenizers return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        return len(self.encode_prompt(messages))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[Delta]:
        """Deltas of one generation. The request is checked and queued now (a full queue raises
        ``ServerBusyError`` here, before any delta); the engine thread computes its tokens, in a
        batch with whatever else is running. Closing the returned iterator cancels the request."""
        self.load()
        prompt = self.encode_prompt(messages)
        check_context(len(prompt), params.max_new_tokens, self.context_window)
        handle = self.scheduler.submit(prompt, params)
        return stream_deltas(handle, len(prompt), self._tok, self._eos_ids, params, t0=handle.submitted)

    @property
    def scheduler(self):
        """The engine thread, started on first use (after ``load()``)."""
        if self._scheduler is None:
            with self._load_lock:
                if self._scheduler is None:
                    from llmspace.engine.scheduler import Scheduler

                    s = self.settings
                    self._scheduler = Scheduler(
                        self._batch_ops(), self._eos_ids, max_num_seqs=s.max_num_seqs, max_queue=s.max_queue,
                        queue_timeout_s=s.queue_timeout_s, request_timeout_s=s.request_timeout_s,
                        keepalive_s=s.keepalive_s, name=self.model_id, on_thread_start=self._on_engine_thread)
        return self._scheduler

    def _on_engine_thread(self) -> None:
        """Run once on the engine thread before its first step (per-thread runtime settings)."""

    def engine_stats(self) -> dict:
        """Queue and batch figures for /health, ``llmspace info`` and /metrics."""
        s = self.settings
        out = {"max_num_seqs": s.max_num_seqs, "max_queue": s.max_queue, "running": 0, "waiting": 0}
        if self._scheduler is not None:
            st = self._scheduler.stats
            out.update(running=self._scheduler.running, waiting=self._scheduler.waiting, steps=st.steps,
                       tokens=st.tokens, admitted=st.admitted, rejected=st.rejected, max_batch=st.max_batch,
                       errors=st.errors)
        return out
