"""Next-token choice from logits: greedy, or temperature / top-k / top-p sampling.

The one sampler of every local backend (numpy, so the ONNX backend needs no torch;
the torch backend hands it the last position's logits as a numpy row). One sampler
means one seed gives the same tokens on every backend whose logits agree.
"""

from __future__ import annotations

from llmspace.engine.base import GenerationParams


def make_rng(seed: int | None):
    """The random source ``sample_next`` draws from: seeded, or fresh entropy when ``seed`` is None."""
    import numpy as np

    return np.random.default_rng(seed)


def sample_next(logits, params: GenerationParams, rng) -> int:
    """``logits``: 1-D float array over the vocabulary (one position); ``rng``: from ``make_rng``
    (unused when greedy)."""
    import numpy as np

    logits = np.asarray(logits)
    if params.greedy:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / params.temperature
    if params.top_k and params.top_k < z.size:
        kth = np.partition(z, -params.top_k)[-params.top_k]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if params.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        sorted_p = p[order]
        # keep the smallest set whose mass reaches top_p (always at least one token)
        drop = np.cumsum(sorted_p) - sorted_p >= params.top_p
        sorted_p[drop] = 0.0
        p = np.zeros_like(p)
        p[order] = sorted_p
        p /= p.sum()
    return int(rng.choice(p.size, p=p))
