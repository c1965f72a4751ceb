"""Next-token choice from logits: greedy, or temperature / top-k / top-p sampling."""

from __future__ import annotations

from llmspace.engine.base import GenerationParams


def sample_next(logits, params: GenerationParams, generator) -> int:
    """``logits``: 1-D float tensor over the vocabulary (CPU)."""
    import torch

    if params.greedy:
        return int(torch.argmax(logits))
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.numel():
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        cum = torch.cumsum(sorted_p, dim=-1)
        # keep the smallest set whose mass reaches top_p (always at least one token)
        drop = cum - sorted_p >= params.top_p
        sorted_p[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))
