"""Parity check: does an ONNX file compute what the PyTorch model computes?

Per dtype, on one fixed chat prompt:
- logits over every prompt position: max and mean absolute difference, and the
  share of positions whose top token agrees;
- greedy decoding for N steps (eos ignored, so every step counts): how many
  leading tokens agree with PyTorch's.
fp32 must match (max diff <= 1e-3, all N tokens agree). Quantized files are
approximations, so they are held to what a broken graph (wrong KV plumbing,
wrong weights) would fail: the correlation of their logits with PyTorch's,
averaged over positions, must reach 0.95 (q8), 0.8 (q4) or 0.75 (int8). Their top-1 and
greedy agreement are reported, not required: one flipped near-tie changes
every later token, and random test weights quantize worst of all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

PROMPT = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
FP32_MAX_DIFF = 1e-3
MIN_CORRELATION = {"fp32": 0.9999, "q8": 0.95, "q4": 0.8, "int8": 0.75}


@dataclass
class ParityResult:
    dtype: str
    max_abs_diff: float
    mean_abs_diff: float
    correlation: float
    top1_agreement: float
    steps: int
    tokens_agree: int
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def prompt_ids(tokenizer) -> list[int]:
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=True) \
        if tokenizer.chat_template else tokenizer("The capital of France is")["input_ids"]
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def torch_reference(model, ids: list[int], steps: int):
    """(prompt logits ``(len(ids), vocab)`` as numpy, greedy ``steps`` token ids)."""
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        logits = out.logits[0].float().numpy()
        past, nxt, tokens = out.past_key_values, int(out.logits[0, -1].argmax()), []
        for _ in range(steps):
            tokens.append(nxt)
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, int(out.logits[0, -1].argmax())
    return logits, tokens


def check_file(onnx_file: Path, dtype: str, ids: list[int], ref_logits, ref_tokens) -> ParityResult:
    import numpy as np

    from llmspace.engine.onnx_engine import OrtCausalLM

    lm = OrtCausalLM(onnx_file)
    logits, _ = lm.forward(ids, lm.empty_past(), 0)
    diff = np.abs(logits - ref_logits)
    top1 = float(np.mean(logits.argmax(-1) == ref_logits.argmax(-1)))
    a = logits - logits.mean(-1, keepdims=True)
    b = ref_logits - ref_logits.mean(-1, keepdims=True)
    corr = float(np.mean((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)))
    tokens = list(lm.token_ids(ids, len(ref_tokens)))
    agree = next((i for i, (a, b) in enumerate(zip(tokens, ref_tokens)) if a != b), len(ref_tokens))
    if dtype == "fp32":
        passed = float(diff.max()) <= FP32_MAX_DIFF and agree == len(ref_tokens)
    else:
        passed = bool(np.isfinite(logits).all()) and corr >= MIN_CORRELATION[dtype]
    return ParityResult(dtype, round(float(diff.max()), 6), round(float(diff.mean()), 6), round(corr, 4),
                        round(top1, 4),
                        len(ref_tokens), agree, passed)


def check_parity(model, tokenizer, folder: Path, dtypes: list[str], steps: int = 16) -> list[ParityResult]:
    from llmspace.export.layout import onnx_path

    ids = prompt_ids(tokenizer)
    ref_logits, ref_tokens = torch_reference(model, ids, steps)
    return [check_file(onnx_path(folder, d), d, ids, ref_logits, ref_tokens) for d in dtypes]


def format_parity(results: list[ParityResult]) -> str:
    lines = ["| dtype | max abs logit diff | mean abs diff | logit correlation | top-1 agreement "
             "| greedy tokens agreeing | passed |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.dtype} | {r.max_abs_diff:.2e} | {r.mean_abs_diff:.2e} | {r.correlation:.4f} | {r.top1_agreement:.0%} "
                     f"| {r.tokens_agree}/{r.steps} | {'yes' if r.passed else 'NO'} |")
    return "\n".join(lines)
