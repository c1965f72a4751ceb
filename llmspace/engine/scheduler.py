"""The engine thread: one thread owns a model, its KV caches and a bounded queue.

Request handlers never touch the model. ``Scheduler.submit`` puts a request on a
bounded FIFO queue (full: ``ServerBusyError``, which the API answers with 503 and
``Retry-After``) and returns a ``RequestHandle``: an iterator over that request's
own queue of chosen token ids. Nothing is sent over the network by the engine
thread, and nothing a reader does (reading slowly, stopping without closing)
holds the model.

Continuous batching: between two decode steps the thread admits waiting requests
(each one's prompt is prefilled alone, then its KV cache joins the batch, left-
padded to the longest row) and drops rows that finished, were cancelled (a
closed handle: a client that went away) or ran past their timeout. Every active
row advances one token per step, in one forward pass over the whole batch, so
eight streams cost little more than one on a memory-bound CPU.

A backend supplies ``BatchOps`` (prefill one prompt; decode one token for each
row of a left-padded batch); the bookkeeping, sampling, cancellation and
timeouts are here, shared by every local backend.
"""

from __future__ import annotations

import atexit
import logging
import math
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from llmspace.engine.base import GenerationParams
from llmspace.errors import GenerationError, LLMSpaceError, ServerBusyError

log = logging.getLogger("llmspace.engine")

WAITING = -1  # what a handle yields while its request still waits in the queue (a keep-alive tick)
_LIVE: "weakref.WeakSet[Scheduler]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Stop engine threads before the interpreter goes: a daemon thread killed inside a native
    kernel at exit can abort the process ("terminate called without an active exception")."""
    live = list(_LIVE)
    for s in live:
        s.shutdown()
    for s in live:
        s._thread.join(timeout=5)


class BatchOps(Protocol):
    """What a backend does for the scheduler. A cache is a list of per-layer ``(key, value)``
    arrays of shape (batch, kv_heads, length, head_dim) in the backend's own array type;
    ``mask`` is a numpy int64 (batch, length) array, 0 where a row is left padding."""

    def prefill(self, ids: list[int], max_new_tokens: int) -> tuple[Any, list]:
        """Logits (vocab,) float32 numpy of the last prompt position, and the prompt's cache (batch 1);
        ``max_new_tokens`` lets a backend that preallocates its cache size it."""

    def decode(self, tokens: list[int], cache: list, mask, positions: list[int]) -> tuple[Any, list]:
        """One step for every row: logits (batch, vocab) float32 numpy and the cache grown by one."""

    def pad_left(self, cache: list, n: int) -> list: ...

    def concat(self, a: list, b: list) -> list: ...

    def take(self, cache: list, rows: list[int], start: int) -> list:
        """Rows ``rows`` of the cache, from position ``start`` on."""


@dataclass
class _Request:
    prompt: list[int]
    params: GenerationParams
    out: queue.SimpleQueue
    submitted: float
    deadline: float | None
    rng: Any = None
    admitted: float | None = None
    cancelled: bool = False
    generated: int = 0
    position: int = 0  # the next token's position (real tokens so far)
    last: int = 0
    done: bool = False

    def push(self, kind: str, value=None) -> None:
        self.out.put((kind, value))


class RequestHandle:
    """The reader's side of one request: iterate it for token ids (``WAITING`` while it is queued,
    every ``keepalive_s``); ``close()`` cancels it, and the engine drops its row at the next step."""

    def __init__(self, req: _Request, keepalive_s: float):
        self._req = req
        self._keepalive = keepalive_s
        self.finish_reason: str | None = None  # set by the engine when it ends the request itself

    @property
    def submitted(self) -> float:
        return self._req.submitted

    @property
    def queue_s(self) -> float | None:
        r = self._req
        return None if r.admitted is None else r.admitted - r.submitted

    def __iter__(self):
        return self

    def __next__(self) -> int:
        if self.finish_reason is not None:
            raise StopIteration
        while True:
            try:
                kind, value = self._req.out.get(timeout=self._keepalive)
            except queue.Empty:
                if self._req.admitted is None:
                    return WAITING
                continue
            if kind == "token":
                return value
            if kind == "end":
                self.finish_reason = value
                raise StopIteration
            if kind == "error":
                self.finish_reason = "error"
                raise value

    def backlog(self) -> int:
        """Tokens computed and not yet read: a reader that is behind decodes them in one go."""
        return self._req.out.qsize()

    def close(self) -> None:
        self._req.cancelled = True

    def __del__(self):  # a handle dropped unread must not keep generating
        self._req.cancelled = True


@dataclass
class SchedulerStats:
    steps: int = 0
    tokens: int = 0
    admitted: int = 0
    rejected: int = 0
    max_batch: int = 0
    mean_request_s: float = 0.0
    errors: int = 0


class Scheduler:
    """One engine thread for one model. ``sample(logits, params, rng)`` picks a token;
    ``make_rng(seed)`` makes a request's generator; ``eos_ids`` end a row."""

    def __init__(self, ops: BatchOps, eos_ids: set[int], *, max_num_seqs: int = 8, max_queue: int = 64,
                 queue_timeout_s: float = 120.0, request_timeout_s: float = 600.0, keepalive_s: float = 10.0,
                 name: str = "model", on_thread_start=None):
        from llmspace.engine.sampling import make_rng, sample_next

        self.ops, self.eos_ids, self.name = ops, set(eos_ids), name
        self.max_num_seqs, self.max_queue = max_num_seqs, max_queue
        self.queue_timeout_s, self.request_timeout_s, self.keepalive_s = queue_timeout_s, request_timeout_s, keepalive_s
        self._make_rng, self._sample = make_rng, sample_next
        self._queue: queue.Queue[_Request] = queue.Queue(maxsize=max_queue)
        self._active: list[_Request] = []
        self._cache: list | None = None
        self._mask = None
        self.stats = SchedulerStats()
        self._on_thread_start = on_thread_start
        self._stop = False
        # the thread holds the scheduler weakly: when its engine is dropped, the thread ends and the model is freed
        self._thread = threading.Thread(target=_engine_thread, args=(weakref.ref(self),),
                                        name=f"llmspace-engine-{name}", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    # ---------------------------------------------------------------- handler side
    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> int:
        return len(self._active)

    def submit(self, prompt: list[int], params: GenerationParams) -> RequestHandle:
        now = time.monotonic()
        timeout = self.request_timeout_s
        req = _Request(list(prompt), params, queue.SimpleQueue(), now, now + timeout if timeout else None,
                       rng=self._make_rng(params.seed), position=len(prompt))
        try:
            self._queue.put_nowait(req)
        except queue.Full:
            self.stats.rejected += 1
            raise ServerBusyError(
                f"The model is busy: {self.running} requests are generating and {self.max_queue} are waiting "
                f"(the queue is full). Retry in {self.retry_after()} s, or raise LLMSPACE_MAX_QUEUE / "
                "LLMSPACE_MAX_NUM_SEQS.", retry_after=self.retry_after()) from None
        return RequestHandle(req, self.keepalive_s)

    def retry_after(self) -> int:
        """Seconds until a queued request would likely start: the queue drains ``max_num_seqs`` at a time."""
        per = self.stats.mean_request_s or 5.0
        return max(1, math.ceil(per * (self.waiting + 1) / self.max_num_seqs))

    def shutdown(self) -> None:
        """Stop the thread after its current step; requests still running or queued end with an error."""
        self._stop = True

    # ---------------------------------------------------------------- engine thread
    def _tick(self) -> None:
        """Admit what may join, then one decode step (or wait briefly for work)."""
        try:
            self._admit()
            if self._active:
                self._step()
        except Exception as exc:  # a backend crash: fail what runs, keep serving
            log.exception("engine step failed")
            self._fail_all(exc)

    def _close(self) -> None:
        bye = "The server is shutting down; retry later or on another replica."
        self._fail_all(ServerBusyError(bye, retry_after=5), count=False)
        while True:
            try:
                req = self._queue.get_nowait()
            except queue.Empty:
                break
            req.push("error", ServerBusyError(bye, retry_after=5))

    def _admit(self) -> None:
        while len(self._active) < self.max_num_seqs:
            try:
                req = self._queue.get(timeout=0.2) if not self._active else self._queue.get_nowait()
            except queue.Empty:
                return
            now = time.monotonic()
            if req.cancelled:
                self._end(req, "cancelled")
                continue
            if self.queue_timeout_s and now - req.submitted > self.queue_timeout_s:
                req.done = True
                self.stats.rejected += 1
                req.push("error", ServerBusyError(
                    f"The request waited {now - req.submitted:.0f} s for the model (LLMSPACE_QUEUE_TIMEOUT_S is "
                    f"{self.queue_timeout_s:g}); the server is overloaded. Retry later.", retry_after=self.retry_after()))
                continue
            req.admitted = now
            self.stats.admitted += 1
            try:
                logits, cache = self.ops.prefill(req.prompt, req.params.max_new_tokens)
            except Exception as exc:
                log.exception("prefill failed")
                self.stats.errors += 1
                req.done = True
                req.push("error", _as_error(exc))
                continue
            if self._choose(req, logits):  # ended on its first token
                continue
            self._join(req, cache)

    def _choose(self, req: _Request, logits) -> bool:
        """Sample the request's next token and send it; True when the request ended."""
        tok = self._sample(logits, req.params, req.rng)
        req.generated += 1
        req.last = tok
        self.stats.tokens += 1
        req.push("token", tok)
        if tok in self.eos_ids:
            self._end(req, "stop")
            return True
        if req.generated >= req.params.max_new_tokens:
            self._end(req, "length")
            return True
        return False

    def _join(self, req: _Request, cache: list) -> None:
        import numpy as np

        n = len(req.prompt)
        if self._cache is None:
            self._cache, self._mask = cache, np.ones((1, n), dtype=np.int64)
        else:
            width = self._mask.shape[1]
            if n < width:
                cache = self.ops.pad_left(cache, width - n)
            elif n > width:
                self._cache = self.ops.pad_left(self._cache, n - width)
                self._mask = np.pad(self._mask, ((0, 0), (n - width, 0)))
            row = np.zeros((1, max(n, width)), dtype=np.int64)
            row[0, -n:] = 1
            self._cache = self.ops.concat(self._cache, cache)
            self._mask = np.concatenate([self._mask, row], axis=0)
        self._active.append(req)

    def _step(self) -> None:
        import numpy as np

        active = self._active
        b = len(active)
        self.stats.steps += 1
        self.stats.max_batch = max(self.stats.max_batch, b)
        mask = np.concatenate([self._mask, np.ones((b, 1), dtype=np.int64)], axis=1)
        logits, cache = self.ops.decode([r.last for r in active], self._cache, mask, [r.position for r in active])
        self._cache, self._mask = cache, mask
        now = time.monotonic()
        keep = []
        for i, req in enumerate(active):
            req.position += 1
            if req.cancelled:
                self._end(req, "cancelled")
            elif req.deadline is not None and now > req.deadline:
                self._end(req, "timeout")
            elif not self._choose(req, logits[i]):
                keep.append(i)
        if len(keep) < b:
            self._shrink(keep)

    def _shrink(self, keep: list[int]) -> None:
        if not keep:
            self._active, self._cache, self._mask = [], None, None
            return
        mask = self._mask[keep]
        start = int(mask.any(axis=0).argmax())  # columns before it are padding in every kept row
        self._cache = self.ops.take(self._cache, keep, start)
        self._mask = mask[:, start:]
        self._active = [self._active[i] for i in keep]

    def _end(self, req: _Request, reason: str) -> None:
        req.done = True
        if req.admitted is not None:
            took = time.monotonic() - req.submitted
            m = self.stats.mean_request_s
            self.stats.mean_request_s = took if not m else 0.8 * m + 0.2 * took
        req.push("end", reason)

    def _fail_all(self, exc: Exception, count: bool = True) -> None:
        if count:
            self.stats.errors += 1
        err = _as_error(exc)
        for req in self._active:
            if not req.done:
                req.done = True
                req.push("error", err)
        self._active, self._cache, self._mask = [], None, None


def _engine_thread(ref: "weakref.ref[Scheduler]") -> None:
    s = ref()
    if s is None:
        return
    start, s._on_thread_start = s._on_thread_start, None
    if start is not None:
        start()
    del start, s
    while True:
        s = ref()
        if s is None:
            return
        if s._stop:
            s._close()
            return
        s._tick()
        del s


def _as_error(exc: Exception) -> LLMSpaceError:
    if isinstance(exc, LLMSpaceError):
        return exc
    err = GenerationError(f"The model failed during generation ({type(exc).__name__}: {exc}). This request ended; "
                          "the server keeps serving, so retrying may work. See the server log.")
    err.__cause__ = exc
    return err
