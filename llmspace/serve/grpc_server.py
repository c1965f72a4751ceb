"""gRPC beside the HTTP API: the service ``llmspace.v1.LLMSpace`` of ``llmspace/serve/grpc/llmspace.proto``.

The same operations as the HTTP API, through the same library calls: ``Generate`` and
``GenerateStream`` go through ``chat.start_chat`` and ``ChatTurn.stream`` (validation, the
context check, the A/B arm, the response log, /metrics), ``Embed`` through
``embeddings.embed_request`` (the same bounds as ``/v1/embeddings``). Errors become gRPC status
codes (``status_code_for``); a busy engine's ``Retry-After`` travels as trailing metadata
``retry-after``. A call the client cancels (or whose deadline passes) ends its generation at
once: the engine's stream is closed, which frees the model and records the answer as
``cancelled``.

The standard health service (``grpc.health.v1.Health``) is registered too, for load balancers
and ``grpc_health_probe``.

``llmspace serve --grpc-port N`` (or ``LLMSPACE_GRPC_PORT``) starts it; ``docs/grpc.md`` shows a client.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Iterator

import grpc

from llmspace.errors import (
    ConfigError,
    LLMSpaceError,
    ModelNotFoundError,
    NotFoundError,
    ServerBusyError,
    UpstreamError,
    ValidationError,
)
from llmspace.serve.grpc import llmspace_pb2 as pb
from llmspace.serve.grpc import llmspace_pb2_grpc as pb_grpc

log = logging.getLogger("llmspace.grpc")

SERVICE = "llmspace.v1.LLMSpace"
MAX_MESSAGE_BYTES = 16 * 2**20  # a request or an answer (a batch of embeddings); gRPC's default is 4 MiB


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status for an error (the HTTP API's status in gRPC's terms)."""
    if isinstance(exc, (ValidationError, ConfigError)):  # ContextLengthError is a ValidationError
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, (ModelNotFoundError, NotFoundError)):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, ServerBusyError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, UpstreamError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, LLMSpaceError) and exc.status == 400:
        return grpc.StatusCode.INVALID_ARGUMENT
    return grpc.StatusCode.INTERNAL


def _usage(u) -> pb.Usage:
    return pb.Usage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, total_tokens=u.total_tokens)


def _timings(t: dict | None) -> dict[str, float]:
    return {k: float(v) for k, v in (t or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _user_key(request, context) -> str | None:
    from llmspace.evals.online import client_key

    auth = next((v for k, v in (context.invocation_metadata() or ()) if k == "authorization"), None)
    return client_key(request.user or None, auth if isinstance(auth, str) else None)


class _GenerationStream:
    """The response iterator of one ``GenerateStream`` call. grpc stops asking a cancelled call
    for responses but never closes its iterator; ``end`` (a ``context.add_callback``) does: at
    once when the generation sits between chunks, else the generation sees ``stop`` at the
    engine's next delta (a token, or a keep-alive while it waits) and ends itself."""

    def __init__(self, chunks_for):
        self.stop = threading.Event()
        self._chunks = chunks_for(self.stop)
        self._state = threading.Lock()
        self._busy = self._ended = False

    def __iter__(self):
        return self

    def __next__(self):
        with self._state:
            if self._ended:
                raise StopIteration
            self._busy = True
        try:
            item = next(self._chunks)
        except BaseException:  # the last chunk was sent, or the call was aborted
            with self._state:
                self._busy, self._ended = False, True
            raise
        with self._state:
            self._busy = False
            if not self._ended:
                return item
        self._chunks.close()  # the call ended during this step: end the generation here
        raise StopIteration

    def end(self) -> None:
        """The call is over (finished, failed, cancelled, deadline passed)."""
        self.stop.set()
        with self._state:
            if self._ended:
                return
            self._ended = True
            busy = self._busy
        if not busy:  # suspended between chunks: close it now, off grpc's polling thread
            threading.Thread(target=self._chunks.close, name="llmspace-grpc-cancel", daemon=True).start()


class LLMSpaceServicer(pb_grpc.LLMSpaceServicer):
    def __init__(self, services):
        self.services = services

    # ---- errors --------------------------------------------------------
    def _abort(self, context, method: str, exc: BaseException):
        code = status_code_for(exc)
        if isinstance(exc, LLMSpaceError):
            status, message = exc.status, exc.message
        else:
            log.exception("unhandled error in gRPC %s", method, exc_info=exc)
            status, message = 500, f"Internal error: {type(exc).__name__}: {exc}"
        self.services.metrics.errors.labels(f"/{SERVICE}/{method}", str(status)).inc()
        if getattr(exc, "retry_after", None):
            context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
        context.abort(code, message)  # raises

    # ---- chat ----------------------------------------------------------
    def _start(self, request, context):
        """The turn and its engine stream: everything that can fail before the first token."""
        from llmspace.chat import check_model_name, request_params, start_chat

        services = self.services
        check_model_name(services, request.model or None)
        params = request_params(
            max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
            temperature=request.temperature if request.HasField("temperature") else None,
            top_p=request.top_p if request.HasField("top_p") else None,
            top_k=request.top_k if request.HasField("top_k") else None,
            seed=request.seed if request.HasField("seed") else None,
            stop=list(request.stop))
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        turn = start_chat(services, messages, params, user_key=_user_key(request, context))
        return turn, turn.stream()  # a full engine queue raises ServerBusyError here or at the first delta

    def Generate(self, request, context):
        stop = threading.Event()
        if not context.add_callback(stop.set):  # the client cancelled, or its deadline passed
            stop.set()
        try:
            turn, deltas = self._start(request, context)
            parts, last = [], None
            try:
                for d in deltas:
                    if stop.is_set():  # nobody reads the rest
                        break
                    parts.append(d.text)
                    if d.finish_reason is not None:
                        last = d
            finally:
                deltas.close()  # frees the model; an unfinished answer is recorded as cancelled
        except Exception as exc:
            self._abort(context, "Generate", exc)
        if last is None:
            context.abort(grpc.StatusCode.CANCELLED, "The call ended before the answer did.")
        return pb.GenerateResponse(id=turn.id, model=turn.model, text="".join(parts), finish_reason=last.finish_reason,
                                   usage=_usage(last.usage), timings=_timings(last.timings), variant=turn.variant or "")

    def GenerateStream(self, request, context):
        try:
            turn, deltas = self._start(request, context)
        except Exception as exc:
            self._abort(context, "GenerateStream", exc)

        def chunks(stop: threading.Event) -> Iterator[pb.GenerateChunk]:
            base = {"id": turn.id, "model": turn.model, "variant": turn.variant or ""}
            try:
                for d in deltas:
                    if stop.is_set():
                        return
                    if d.waiting:  # still queued: HTTP/2 keeps the connection alive without our help
                        continue
                    if d.finish_reason is None:
                        if d.text:
                            yield pb.GenerateChunk(text=d.text, **base)
                        continue
                    yield pb.GenerateChunk(text=d.text, finish_reason=d.finish_reason, usage=_usage(d.usage),
                                           timings=_timings(d.timings), **base)
            except Exception as exc:
                self._abort(context, "GenerateStream", exc)
            finally:
                deltas.close()  # however it ends: the model is freed, the answer recorded (as cancelled if cut)

        stream = _GenerationStream(chunks)
        if not context.add_callback(stream.end):
            stream.end()
        return stream

    # ---- embeddings and health -------------------------------------------
    def Embed(self, request, context):
        from llmspace.embeddings import embed_request

        try:
            r = embed_request(self.services, list(request.texts), request.model or None, param="texts")
        except Exception as exc:
            self._abort(context, "Embed", exc)
        return pb.EmbedResponse(embeddings=[pb.Embedding(values=v) for v in r.vectors], model=r.model,
                                usage=pb.Usage(prompt_tokens=r.prompt_tokens, total_tokens=r.prompt_tokens))

    def Health(self, request, context):
        from llmspace import __version__

        eng = self.services.engine
        return pb.HealthResponse(status="ok", version=__version__, model=eng.model_id, backend=eng.backend,
                                 embedding_model=self.services.embedder.name,
                                 model_loaded=getattr(eng, "_model", None) is not None)


def _default_workers(settings) -> int:
    # one worker per request the engine may hold (decoding and queued) and a few for Embed/Health: the engine's
    # own bound then answers RESOURCE_EXHAUSTED + retry-after, not a hidden queue in front of it
    return settings.max_num_seqs + settings.max_queue + 4


def start_grpc_server(services, port: int, host: str = "127.0.0.1", *, max_workers: int | None = None) -> grpc.Server:
    """Serve ``llmspace.v1.LLMSpace`` (and ``grpc.health.v1.Health``) on ``host:port``; returns the
    started server (``server.stop(grace)`` ends it). Raises ``ConfigError`` when the port cannot be bound."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    workers = max_workers or _default_workers(services.settings)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmspace-grpc"),
                         maximum_concurrent_rpcs=workers,  # more: RESOURCE_EXHAUSTED at once
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                                  ("grpc.so_reuseport", 0)])  # a port in use is an error, not shared
    pb_grpc.add_LLMSpaceServicer_to_server(LLMSpaceServicer(services), server)
    checker = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"gRPC cannot listen on {address}: the port is in use or the address is not this "
                          "machine's. Choose another with --grpc-port (LLMSPACE_GRPC_PORT).", param="grpc_port")
    server.start()
    for name in ("", SERVICE):
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    server.llmspace_health = checker  # stop_grpc_server marks it NOT_SERVING first
    return server


def stop_grpc_server(server: grpc.Server, grace: float = 5.0) -> None:
    """Tell health checkers we are going, let calls in flight finish for ``grace`` seconds, then stop."""
    checker = getattr(server, "llmspace_health", None)
    if checker is not None:
        checker.enter_graceful_shutdown()
    server.stop(grace).wait()
