"""Prometheus metrics, named after vLLM's so the same dashboards work.

One ``Metrics`` per process (held by ``Services``), on its own registry so
tests and several apps in one process never collide. It sits below the shells:
the library records into it (chat and RAG generations through ``track``), and
the HTTP shell's ``/metrics`` only renders it.
"""

from __future__ import annotations

from typing import Iterator

from llmspace.engine.base import Delta

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
ITL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram("llmspace:time_to_first_token_seconds", "Time to first token.",
                              ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("llmspace:inter_token_latency_seconds", "Mean time between output tokens, per request.",
                             ["model"], buckets=ITL_BUCKETS, registry=r)
        self.e2e = Histogram("llmspace:e2e_request_latency_seconds", "End-to-end generation latency.",
                             ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("llmspace:prompt_tokens", "Prompt tokens processed.", ["model"], registry=r)
        self.generation_tokens = Counter("llmspace:generation_tokens", "Tokens generated.", ["model"], registry=r)
        self.requests = Counter("llmspace:request_success", "Finished generations by finish reason.",
                                ["model", "finished_reason"], registry=r)
        self.errors = Counter("llmspace:request_errors", "Requests answered with an error.", ["route", "status"],
                              registry=r)
        self.running = Gauge("llmspace:num_requests_running", "Requests generating now.", registry=r)
        self.waiting = Gauge("llmspace:num_requests_waiting", "Requests waiting for the model.", registry=r)
        self.queue_time = Histogram("llmspace:request_queue_time_seconds", "Time a request waited for a batch slot.",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Gauge("llmspace:batch_size_max", "Largest number of sequences decoded in one step so far.",
                                ["model"], registry=r)
        self.rejected = Gauge("llmspace:requests_rejected", "Requests refused because the engine queue was full "
                              "or they waited too long.", ["model"], registry=r)
        self.embedding_inputs = Counter("llmspace:embedding_inputs", "Texts embedded.", ["model"], registry=r)

    def track(self, model: str, deltas: Iterator[Delta]) -> Iterator[Delta]:
        """Pass a generation's deltas through, counting it as waiting until its
        first delta, then running, and observing its final delta. Every path that
        generates (chat, RAG answers) goes through here, so /metrics sees them all."""
        self.waiting.inc()
        started = False
        try:
            for delta in deltas:
                if not started and not delta.waiting:
                    started = True
                    self.waiting.dec()
                    self.running.inc()
                if delta.finish_reason is not None:
                    self.observe(model, delta)
                yield delta
        finally:
            if started:
                self.running.dec()
            else:
                self.waiting.dec()
            close = getattr(deltas, "close", None)
            if close is not None:  # a reader that left: the engine's stream ends now, not at garbage collection
                close()

    def observe(self, model: str, last: Delta) -> None:
        """Record one finished generation from its final delta."""
        t = last.timings or {}
        u = last.usage
        if "queue_s" in t:
            self.queue_time.labels(model).observe(t["queue_s"])
        if "ttft_s" in t:
            self.ttft.labels(model).observe(t["ttft_s"])
        if "total_s" in t:
            self.e2e.labels(model).observe(t["total_s"])
        if u is not None:
            self.prompt_tokens.labels(model).inc(u.prompt_tokens)
            self.generation_tokens.labels(model).inc(u.completion_tokens)
            if u.completion_tokens > 1 and t.get("total_s") and t.get("ttft_s") is not None:
                self.itl.labels(model).observe((t["total_s"] - t["ttft_s"]) / (u.completion_tokens - 1))
        self.requests.labels(model, last.finish_reason or "unknown").inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
