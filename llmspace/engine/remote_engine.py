"""Remote backend: an OpenAI-compatible server behind the engine protocol.

``backend=remote`` sends every generation to ``remote_base_url``'s
``/chat/completions`` with ``stream: true`` and reads the server-sent events:
vLLM, llama.cpp's ``llama-server``, TGI's Messages API and another llmspace all
speak it. Scale-out (several GPUs, tensor parallel, PagedAttention) is the
remote engine's business; llmspace keeps the UI, RAG, evals, metrics and the
request log in front of it (docs/serving.md).

Faults become ``UpstreamError`` (HTTP 502) naming the URL and saying what to do:
nothing listening, nothing received for ``remote_timeout_s`` (connect, or
between two chunks of an answer), an answer that is not OpenAI's shape (quoted),
an error event or a broken connection mid-answer. A busy remote (429/503)
becomes ``ServerBusyError`` with its ``Retry-After``; a remote that says the
prompt is too long becomes ``ContextLengthError`` (400).

``stream()`` sends the request at once, so a remote that is down or answers
an error status fails the call itself, before any delta; closing what it
returns closes the HTTP response, and the remote server sees the disconnect
and stops generating.

httpx is imported on first use: ``import llmspace`` stays light.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import weakref
from typing import Iterator

from llmspace.config import Settings
from llmspace.engine.base import Delta, GenerationParams, Message, Usage
from llmspace.engine.common import StopMatcher
from llmspace.errors import ConfigError, ContextLengthError, LLMSpaceError, ServerBusyError, UpstreamError, ValidationError

DEFAULT_CONTEXT_WINDOW = 2048
MAX_LINE_BYTES = 1 << 20  # one SSE line; a remote sending more without a newline is not streaming chat
MAX_BODY_BYTES = 4 << 20  # a non-streamed body (model list, error page, JSON completion)
EXCERPT_CHARS = 200
_FINISH = {"stop": "stop", "length": "length", "timeout": "timeout", "cancelled": "cancelled", "abort": "cancelled"}


class RemoteEngine:
    """An OpenAI-compatible server's model. ``model_id`` is ``model`` (or
    ``settings.remote_model``) or, when neither is given, the first chat model the
    server's ``GET /models`` lists; ``context_window`` is ``remote_context_window``
    when set, else what that entry reports (vLLM's ``max_model_len``, llmspace's
    ``llmspace.context_window``), else 2048."""

    backend = "remote"

    def __init__(self, settings: Settings, model: str | None = None):
        if not settings.remote_base_url:
            raise ConfigError("backend=remote needs the remote server's OpenAI base URL: pass --remote-url "
                              "http://HOST:PORT/v1 or set LLMSPACE_REMOTE_BASE_URL (docs/serving.md).",
                              param="remote_base_url")
        self.settings = settings
        self.base_url = settings.remote_base_url.rstrip("/")
        self._asked_model = model or settings.remote_model
        self._model_id: str | None = None
        self._model: dict | None = None  # the remote's /models entry once loaded (what /health reads as model_loaded)
        self.context_window = settings.remote_context_window or DEFAULT_CONTEXT_WINDOW
        self.load_seconds: float | None = None
        self._counts: bool | None = None  # does the server count chat prompts (vLLM's POST /tokenize)? None: untried
        self._client = None
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()

    # ------------------------------------------------------------ identity
    @property
    def model_id(self) -> str:
        if self._model_id is not None:
            return self._model_id
        if self._asked_model:
            return self._asked_model
        return self.load()._model_id  # type: ignore[return-value]

    @property
    def label(self) -> str:
        """What the UI shows, without a network call: the model (when known) and where it runs."""
        return f"{self._model_id or self._asked_model or '(first model served)'} at {self.base_url}"

    @property
    def tokenizer(self):
        raise ConfigError("backend=remote has no local tokenizer: the remote server tokenizes. Count prompts with "
                          "count_prompt_tokens(), or use backend=torch for token-level work.", param="backend")

    # ------------------------------------------------------------- loading
    def load(self) -> "RemoteEngine":
        """Check the server answers ``GET /models`` and serves the model; learn its context window."""
        if self._model is not None:
            return self
        with self._lock:
            if self._model is not None:
                return self
            t0 = time.perf_counter()
            url = f"{self.base_url}/models"
            data = self._get_json(url)
            entries = data.get("data") if isinstance(data, dict) else None
            if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str)
                                                        for e in entries):
                raise UpstreamError(f"GET {url} answered something that is not an OpenAI model list: "
                                    f"{_excerpt(json.dumps(data))}. Is {self.base_url} the server's OpenAI base URL "
                                    "(it usually ends in /v1)?", code="remote_bad_response")
            ids = [e["id"] for e in entries]
            if self._asked_model:
                entry = next((e for e in entries if e["id"] == self._asked_model), None)
                if entry is None:
                    raise UpstreamError(f"The server at {self.base_url} does not serve {self._asked_model!r}; it serves "
                                        f"{', '.join(map(repr, ids)) or 'nothing'}. Pass one of them as --remote-model "
                                        "(LLMSPACE_REMOTE_MODEL).", code="remote_model_not_found")
            else:
                chat = [e for e in entries if _ext(e).get("kind", "chat") == "chat"]  # llmspace lists its embedder too
                if not chat:
                    raise UpstreamError(f"The server at {self.base_url} lists no chat model (GET {url}: "
                                        f"{', '.join(map(repr, ids)) or 'empty'}). Start it with a model, or pass "
                                        "--remote-model (LLMSPACE_REMOTE_MODEL).", code="remote_model_not_found")
                entry = chat[0]
            self.context_window = self._context_window(entry)
            self._model_id = entry["id"]
            self.load_seconds = time.perf_counter() - t0
            self._model = entry
        return self

    def _context_window(self, entry: dict) -> int:
        if self.settings.remote_context_window:
            return self.settings.remote_context_window
        for v in (entry.get("max_model_len"), _ext(entry).get("context_window")):
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return DEFAULT_CONTEXT_WINDOW

    def close(self) -> None:
        """Close the connection pool (an engine is normally kept for the process's life)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    # -------------------------------------------------------------- tokens
    def count_prompt_tokens(self, messages: list[Message]) -> int:
        """The prompt's tokens as the server counts them, where it can: vLLM's (and
        llmspace's) ``POST /tokenize`` with the messages, at the server's root. A
        server without it (llama.cpp's server, TGI) gets ``estimate_prompt_tokens``:
        a guess that leans high, so a prompt the check lets through may still be
        refused by the server, whose context-length error then becomes the same
        ``ContextLengthError``."""
        self.load()
        if self._counts is not False:
            n = self._remote_count({"messages": [m.to_dict() for m in messages], "add_generation_prompt": True})
            if n is not None:
                return n
        return estimate_prompt_tokens(messages)

    def count_tokens(self, text: str) -> int:
        """Tokens of a bare text (no chat template): the server's count where it has ``/tokenize``, else an estimate."""
        self.load()
        if self._counts is not False:
            n = self._remote_count({"prompt": text, "add_special_tokens": False})
            if n is not None:
                return n
        return _estimate_text(text)

    def _remote_count(self, body: dict) -> int | None:
        import httpx

        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        url = f"{root}/tokenize"
        try:
            r = self._http().post(url, json={"model": self.model_id, **body})
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from None
        if r.status_code == 200:
            try:
                data = r.json()
            except ValueError:
                data = None
            count = data.get("count") if isinstance(data, dict) else None
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                self._counts = True
                return count
            self._counts = False  # a catch-all route, or another server's /tokenize (llama.cpp: {"tokens"})
            return None
        err = self._status_error(r, url)
        if isinstance(err, (ServerBusyError, ContextLengthError)):
            raise err
        self._counts = False  # 404, 405, 422, a broken route...: count here; the chat route has the last word
        return None

    # ----------------------------------------------------------- generation
    def stream(self, messages: list[Message], params: GenerationParams) -> Iterator[Delta]:
        """Send the request now; return its deltas (the last with finish_reason, usage, timings).

        Usage is the server's (``stream_options.include_usage``). A server that sends
        none gets what can be counted honestly here: completion tokens as the content
        chunks received (the servers above send one per token; a server that sends
        several tokens a chunk is undercounted), prompt tokens from
        ``count_prompt_tokens`` (exact with ``/tokenize``, else an estimate).
        Timings are measured here, so they include the network: ``ttft_s`` from the
        request to the first text, ``total_s``, and ``tokens_per_s`` after the first.
        Stop strings are sent to the server and also applied here.
        """
        import httpx

        self.load()
        url = f"{self.base_url}/chat/completions"
        body: dict = {"model": self.model_id, "messages": [m.to_dict() for m in messages], "stream": True,
                      "stream_options": {"include_usage": True}, "max_tokens": params.max_new_tokens,
                      "temperature": params.temperature, "top_p": params.top_p}
        if params.top_k:
            body["top_k"] = params.top_k  # not OpenAI's, but vLLM, llama.cpp, TGI and llmspace take it
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        client = self._http()
        t0 = time.monotonic()
        try:
            resp = client.send(client.build_request("POST", url, json=body, headers={"Accept": "text/event-stream"}),
                               stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from None
        try:
            if resp.status_code != 200:
                raise self._status_error(resp, url)
            ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "application/json":  # the server ignored stream=true: one whole completion
                return iter(self._whole(resp, url, messages, params, t0))
            if ctype not in ("text/event-stream", ""):
                raise UpstreamError(f"The remote server at {url} answered {ctype!r}, not an event stream: "
                                    f"{_excerpt(_read_text(resp))}. Is {self.base_url} its OpenAI base URL?",
                                    code="remote_bad_response")
        except BaseException:
            resp.close()
            raise
        return _Stream(self._deltas(resp, url, messages, params, t0), resp)

    def _deltas(self, resp, url: str, messages: list[Message], params: GenerationParams, t0: float) -> Iterator[Delta]:
        import httpx

        stops = StopMatcher(params.stop)
        ttft = finish = usage = None
        chunks, done, junk = 0, False, None
        try:
            for data in _sse_data(resp, url):
                if data is None:  # a comment: the remote keeps the connection alive while the request waits
                    if ttft is None:
                        yield Delta("", waiting=True)
                    continue
                if data.strip() == "[DONE]":
                    done = True
                    break
                event = _event(data, url)
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
                choices = event.get("choices")
                if not isinstance(choices, list):
                    if junk is None:
                        junk = data
                    continue
                hit = False
                for ch in choices:
                    if not isinstance(ch, dict) or ch.get("index", 0) != 0:
                        continue
                    delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
                    text = delta.get("content")
                    if isinstance(text, str) and text:
                        chunks += 1
                        if ttft is None:
                            ttft = time.monotonic() - t0
                        out, hit = stops.feed(text)
                        if out:
                            yield Delta(out)
                    if hit:
                        finish = "stop"
                        break
                    if ch.get("finish_reason"):
                        finish = _FINISH.get(str(ch["finish_reason"]), "stop")
                if hit:
                    break  # a stop string the server did not apply: stop reading (closing cancels it there)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url, started=ttft is not None) from None
        finally:
            resp.close()
        if finish is None:
            if not done:
                what = f"{chunks} chunks of text" if chunks else "no text"
                raise UpstreamError(f"The remote server at {url} ended the answer without finishing it ({what}, no "
                                    "finish_reason, no [DONE])" + (f"; it sent {_excerpt(junk)}" if junk else "")
                                    + ". Check the server's log.", code="remote_bad_response")
            if chunks == 0 and junk is not None:
                raise UpstreamError(f"The remote server at {url} answered events that are not chat completion "
                                    f"chunks: {_excerpt(junk)}. Is it an OpenAI-compatible server?",
                                    code="remote_bad_response")
            finish = "stop"
        tail = stops.flush()
        if tail:
            yield Delta(tail)
        yield self._final(finish, usage, chunks, ttft, t0, messages)

    def _whole(self, resp, url: str, messages: list[Message], params: GenerationParams, t0: float) -> list[Delta]:
        """A server that answered one JSON completion instead of a stream."""
        text = _read_text(resp)
        resp.close()
        event = _event(text, url)
        choices = event.get("choices")
        msg = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, str):
            raise UpstreamError(f"The remote server at {url} answered JSON that is not a chat completion: "
                                f"{_excerpt(text)}.", code="remote_bad_response")
        ttft = time.monotonic() - t0
        stops = StopMatcher(params.stop)
        out, hit = stops.feed(content)
        out += "" if hit else stops.flush()
        finish = "stop" if hit else _FINISH.get(str(choices[0].get("finish_reason")), "stop")
        usage = event.get("usage") if isinstance(event.get("usage"), dict) else None
        return [Delta(out), self._final(finish, usage, 1 if out else 0, ttft, t0, messages)]

    def _final(self, finish: str, usage: dict | None, chunks: int, ttft: float | None, t0: float,
               messages: list[Message]) -> Delta:
        total = time.monotonic() - t0
        prompt, completion = (usage or {}).get("prompt_tokens"), (usage or {}).get("completion_tokens")
        if not isinstance(completion, int) or isinstance(completion, bool):
            completion = chunks
        if not isinstance(prompt, int) or isinstance(prompt, bool):
            try:
                prompt = self.count_prompt_tokens(messages)
            except LLMSpaceError:  # the answer is complete; a count that fails now is not worth losing it for
                prompt = estimate_prompt_tokens(messages)
        n = completion
        return Delta("", finish_reason=finish, usage=Usage(prompt_tokens=prompt, completion_tokens=completion), timings={
            "ttft_s": round(ttft if ttft is not None else total, 4),
            "total_s": round(total, 4),
            "tokens_per_s": round((n - 1) / (total - ttft), 2) if n > 1 and ttft and total > ttft else 0.0,
        })

    # ----------------------------------------------------------------- HTTP
    def _http(self):
        if self._client is None:
            import httpx

            with self._client_lock:  # not self._lock: load() holds that while it asks for /models
                if self._client is None:
                    headers = {"User-Agent": "llmspace"}
                    if self.settings.remote_api_key:
                        headers["Authorization"] = f"Bearer {self.settings.remote_api_key}"
                    self._client = httpx.Client(timeout=httpx.Timeout(self.settings.remote_timeout_s),
                                                headers=headers)
        return self._client

    def _get_json(self, url: str):
        import httpx

        try:
            with self._http().stream("GET", url) as r:
                if r.status_code != 200:
                    raise self._status_error(r, url)
                text = _read_text(r)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from None
        try:
            return json.loads(text)
        except ValueError:
            raise UpstreamError(f"GET {url} answered something that is not JSON: {_excerpt(text)}. Is "
                                f"{self.base_url} the server's OpenAI base URL (it usually ends in /v1)?",
                                code="remote_bad_response") from None

    def _transport_error(self, exc: Exception, url: str, started: bool = False) -> UpstreamError:
        import httpx

        t = self.settings.remote_timeout_s
        if isinstance(exc, httpx.ConnectTimeout):
            return UpstreamError(f"Could not connect to the remote server at {url} within {t:g} s. Check that it "
                                 "runs and is reachable, or fix --remote-url (LLMSPACE_REMOTE_BASE_URL).",
                                 code="remote_timeout")
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamError(f"The remote server at {url} timed out: nothing came for {t:g} s"
                                 f"{' mid-answer' if started else ''}. It may be overloaded or stuck: check it, or "
                                 "raise LLMSPACE_REMOTE_TIMEOUT_S.", code="remote_timeout")
        if isinstance(exc, httpx.ConnectError):
            return UpstreamError(f"Could not connect to the remote server at {url} ({exc}). Start it (docs/serving.md), "
                                 "or fix --remote-url (LLMSPACE_REMOTE_BASE_URL).", code="remote_unreachable")
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
            return UpstreamError(f"The connection to the remote server at {url} broke"
                                 f"{' mid-answer' if started else ''} ({exc or type(exc).__name__}). "
                                 "Check the server's log.", code="remote_disconnected")
        return UpstreamError(f"The request to the remote server at {url} failed: {type(exc).__name__}: {exc}. "
                             "Check --remote-url (LLMSPACE_REMOTE_BASE_URL) and the server.", code="remote_error")

    def _status_error(self, r, url: str) -> LLMSpaceError:
        text = _read_text(r)
        message, code = _error_fields(text)
        quoted = _excerpt(message or text)
        status = r.status_code
        if status in (429, 503):
            retry = _retry_after(r.headers.get("retry-after"))
            return ServerBusyError(f"The remote server at {url} is busy (HTTP {status}): {quoted}. Retry in {retry} s.",
                                   retry_after=retry, code="remote_busy")
        low = f"{message or ''} {code or ''}".lower()
        if status in (400, 413, 422) and ("context" in low or "too long" in low or "maximum" in low and "length" in low):
            return ContextLengthError(f"The remote server at {url} says the request does not fit the model's context: "
                                      f"{quoted}. Shorten the messages or ask for fewer max_tokens.")
        if status in (400, 422):
            return ValidationError(f"The remote server at {url} rejected the request (HTTP {status}): {quoted}. "
                                   "Change the request (max_tokens, sampling, stop strings) to what it accepts.")
        if status in (401, 403):
            return UpstreamError(f"The remote server at {url} refused the request (HTTP {status}): {quoted}. Set its "
                                 "API key with LLMSPACE_REMOTE_API_KEY.", code="remote_unauthorized")
        if status == 404:
            hint = "" if self.base_url.endswith("/v1") else f" (did you mean {self.base_url}/v1?)"
            return UpstreamError(f"The remote server has no {url} (HTTP 404): {quoted}. --remote-url "
                                 f"(LLMSPACE_REMOTE_BASE_URL) is the OpenAI base URL, usually ending in /v1{hint}.",
                                 code="remote_not_found")
        return UpstreamError(f"The remote server at {url} answered HTTP {status}: {quoted}. Check the server's log.",
                             code="remote_error")


class _Stream:
    """The deltas of one remote answer. ``close()``, or losing the last reference,
    closes the HTTP response, so the remote server stops generating."""

    def __init__(self, deltas: Iterator[Delta], resp):
        self._deltas = deltas
        self._close_response = weakref.finalize(self, resp.close)

    def __iter__(self) -> "_Stream":
        return self

    def __next__(self) -> Delta:
        return next(self._deltas)

    def close(self) -> None:
        try:
            self._deltas.close()
        finally:
            self._close_response()


def estimate_prompt_tokens(messages: list[Message]) -> int:
    """A prompt's tokens when the server cannot count them: each message's text
    (``_estimate_text``) plus 4 for its chat-template markers, plus 3 for the
    assistant's opening."""
    return 3 + sum(4 + _estimate_text(m.content) for m in messages)


def _estimate_text(text: str) -> int:
    """One token per 3 ASCII bytes and 1.5 per other character. It leans high: SmolLM2's
    small-vocabulary tokenizer averages ~4 ASCII characters and ~1.3 CJK characters a token on
    the bundled roadmap, larger vocabularies fewer tokens still."""
    ascii_n = sum(1 for c in text if ord(c) < 128)
    return math.ceil(ascii_n / 3 + (len(text) - ascii_n) * 1.5)


def _ext(entry: dict) -> dict:
    ext = entry.get("llmspace")
    return ext if isinstance(ext, dict) else {}


def _sse_data(resp, url: str) -> Iterator[str | None]:
    """The ``data`` of each server-sent event (str), and None for each comment line."""
    buf, data = b"", []
    for chunk in resp.iter_bytes():
        buf += chunk
        while (i := buf.find(b"\n")) >= 0:
            line, buf = buf[:i].rstrip(b"\r"), buf[i + 1:]
            if not line:  # a blank line ends an event
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith(b":"):
                yield None
            else:
                field, _, value = line.partition(b":")
                if field == b"data":
                    data.append(value[1:].decode("utf-8", "replace") if value.startswith(b" ")
                                else value.decode("utf-8", "replace"))
                elif field not in (b"event", b"id", b"retry"):  # not SSE at all: hand it on to be quoted
                    data.append(line.decode("utf-8", "replace"))
        if len(buf) > MAX_LINE_BYTES:
            raise UpstreamError(f"The remote server at {url} sent over {MAX_LINE_BYTES} bytes without a line break: "
                                f"{_excerpt(buf[:EXCERPT_CHARS].decode('utf-8', 'replace'))}. It is not streaming "
                                "chat completion events.", code="remote_bad_response")
    if buf.strip():
        data.append(buf.decode("utf-8", "replace").removeprefix("data:").strip())
    if data:
        yield "\n".join(data)


def _event(data: str, url: str) -> dict:
    try:
        event = json.loads(data)
    except ValueError:
        raise UpstreamError(f"The remote server at {url} sent something that is not JSON: {_excerpt(data)}. "
                            "Is it an OpenAI-compatible server?", code="remote_bad_response") from None
    if not isinstance(event, dict):
        raise UpstreamError(f"The remote server at {url} sent {_excerpt(data)}, not a chat completion object.",
                            code="remote_bad_response")
    message, _ = _error_fields(data) if ("error" in event or event.get("object") == "error") else (None, None)
    if message is not None:
        raise UpstreamError(f"The remote server at {url} failed mid-answer: {_excerpt(message)}. Check the server's "
                            "log; retrying may work.", code="remote_error")
    return event


def _error_fields(text: str) -> tuple[str | None, str | None]:
    """(message, code) from the error shapes servers send: OpenAI's ``{"error": {...}}``,
    vLLM's older ``{"object": "error", "message"}``, FastAPI's ``{"detail"}``, TGI's ``{"error": "..."}``."""
    try:
        d = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(d, dict):
        return None, None
    err = d.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        return (str(msg) if msg is not None else json.dumps(err)), str(err.get("code") or err.get("type") or "")
    if isinstance(err, str):
        return err, str(d.get("error_type") or "")
    if d.get("object") == "error" or "message" in d:
        return str(d.get("message")), str(d.get("code") or d.get("type") or "")
    if "detail" in d:
        return str(d["detail"]), None
    return None, None


def _read_text(r) -> str:
    """A response body, at most MAX_BODY_BYTES of it."""
    out = b""
    for chunk in r.iter_bytes():
        out += chunk
        if len(out) >= MAX_BODY_BYTES:
            break
    return out[:MAX_BODY_BYTES].decode("utf-8", "replace")


def _excerpt(text: str | None) -> str:
    """The start of a body, quoted, on one line; an HTML page's text without its tags."""
    s = text or ""
    if re.search(r"<(!doctype|html|head|body)\b", s[:500], re.I):
        s = re.sub(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", " ", s, flags=re.I | re.S)
    s = " ".join(s.split())
    if not s:
        return "(an empty body)"
    return repr(s if len(s) <= EXCERPT_CHARS else s[:EXCERPT_CHARS] + "…")


def _retry_after(value: str | None) -> int:
    try:
        return max(1, math.ceil(float(value))) if value else 1
    except ValueError:
        return 1
