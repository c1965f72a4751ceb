"""Foundation figures: first and warm start, answer latency and tok/s, server RSS.

    .venv/bin/python benchmarks/bench_foundation.py [--runs 3]

Prints a table; numbers are medians over --runs. Each start is measured in a
fresh subprocess (what a user waits for); decode speed is compared with plain
transformers `generate` on the same prompt in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmspace.device import cpu_name

ROOT = Path(__file__).resolve().parent.parent
PROMPT = [{"role": "user", "content": "Explain in a few sentences why the sky is blue to a curious child."}]

START = """
import time, json, sys
t0 = time.perf_counter()
import torch, transformers, sentence_transformers  # the import cost, measured apart
t1 = time.perf_counter()
from llmspace.config import Settings
from llmspace.serve.server import prepare_services
s = Settings.load(home=sys.argv[1], index_bundled_corpus=False)
svc = prepare_services(s)
print(json.dumps({"seconds": time.perf_counter() - t0, "imports": t1 - t0, "chat_load": svc.engine.load_seconds}))
"""


def timed_start(home: str) -> dict:
    out = subprocess.run([sys.executable, "-c", START, home], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def decode_figures(runs: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmspace.config import Settings
    from llmspace.engine.base import GenerationParams, Message, complete
    from llmspace.services import Services

    svc = Services(Settings.load(index_bundled_corpus=False))
    eng = svc.engine.load()
    msgs = [Message(**m) for m in PROMPT]
    params = GenerationParams(max_new_tokens=64)
    complete(eng, msgs, params)  # warm-up
    ours = [complete(eng, msgs, params) for _ in range(runs)]
    path = eng._tok.name_or_path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    ids = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt")
    gen_tps = []
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=8, do_sample=False)
        for _ in range(runs):
            t0 = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=64, min_new_tokens=64,
                                 do_sample=False, pad_token_id=tok.eos_token_id)
            gen_tps.append((out.shape[1] - ids.shape[1]) / (time.perf_counter() - t0))
    n_tokens = [c.usage.completion_tokens for c in ours]
    e2e_tps = [c.usage.completion_tokens / c.timings["total_s"] for c in ours]
    return {
        "prompt_tokens": ours[0].usage.prompt_tokens,
        "completion_tokens": statistics.median(n_tokens),
        "ttft_s": statistics.median(c.timings["ttft_s"] for c in ours),
        "answer_latency_s": statistics.median(c.timings["total_s"] for c in ours),
        "decode_tok_s": statistics.median(c.timings["tokens_per_s"] for c in ours),
        "e2e_tok_s": statistics.median(e2e_tps),
        "hf_generate_tok_s": statistics.median(gen_tps),
        "fp32_bandwidth_limit_tok_s": 58.0,
    }


def server_rss(home: str) -> dict:
    """Start `llmspace serve` (UI + API), send chat and embedding requests, read peak RSS."""
    import httpx
    from _server import served

    env = {"LLMSPACE_HOME": home, "LLMSPACE_INDEX_BUNDLED_CORPUS": "false"}
    with served(env, timeout=300) as (base, proc):
        for _ in range(3):
            httpx.post(f"{base}/v1/chat/completions", json={"messages": PROMPT, "max_tokens": 64}, timeout=120)
            httpx.post(f"{base}/v1/embeddings", json={"input": ["hello world"] * 32}, timeout=120)
        status = Path(f"/proc/{proc.pid}/status").read_text()
    fields = {k: v for k, v in (line.split(":", 1) for line in status.splitlines() if ":" in line)}
    kb = lambda k: int(fields[k].split()[0])  # noqa: E731
    return {"rss_mb": round(kb("VmRSS") / 1024), "peak_rss_mb": round(kb("VmHWM") / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, {cpu_name()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as home:
        first = timed_start(home)["seconds"]  # converts the packaged GGUF
        warms = [timed_start(home) for _ in range(args.runs)]
        warm = statistics.median(w["seconds"] for w in warms)
        imports = statistics.median(w["imports"] for w in warms)
        chat_load = statistics.median(w["chat_load"] for w in warms)
        os.environ["LLMSPACE_HOME"] = home
        dec = decode_figures(args.runs)
        rss = server_rss(home)
    rows = [
        ("first start (GGUF conversion + load both models)", f"{first:.1f} s"),
        ("warm start (load both models), median", f"{warm:.1f} s"),
        ("  of which importing torch/transformers/sentence-transformers", f"{imports:.1f} s"),
        ("  of which loading the converted chat model", f"{chat_load:.2f} s"),
        ("prompt / completion tokens", f"{dec['prompt_tokens']} / {dec['completion_tokens']:.0f}"),
        ("time to first token, median", f"{dec['ttft_s'] * 1000:.0f} ms"),
        ("answer latency (64 new tokens), median", f"{dec['answer_latency_s']:.2f} s"),
        ("decode tok/s (after first token), llmspace torch", f"{dec['decode_tok_s']:.1f}"),
        ("end-to-end tok/s, llmspace torch", f"{dec['e2e_tok_s']:.1f}"),
        ("end-to-end tok/s, plain transformers generate", f"{dec['hf_generate_tok_s']:.1f}"),
        ("fraction of fp32 bandwidth limit (58 tok/s)", f"{dec['decode_tok_s'] / 58.0:.0%}"),
        ("server RSS after requests (UI+API, both models)", f"{rss['rss_mb']} MB"),
        ("server peak RSS (VmHWM)", f"{rss['peak_rss_mb']} MB"),
    ]
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
