"""Moved to ``llmspace.metrics`` (the library records metrics; ``/metrics`` only
renders them). Kept so that ``from llmspace.serve.metrics import Metrics`` works."""

from llmspace.metrics import ITL_BUCKETS, LATENCY_BUCKETS, Metrics  # noqa: F401
