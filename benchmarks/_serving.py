"""Pure helpers of bench_serving.py: statistics, the bandwidth limit, weight sizes,
server memory, markdown tables and the plot. No model loads here, so the test
(tests/test_bench_serving.py) runs them in a blink."""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

# Figures measured on this machine kind by hand (../shared/BENCHMARKS.md, 2026-12-01, one run, a 2-core Xeon):
# printed when the reference engines are not measured in this run, labelled as such.
REFERENCE = {
    "date": "2026-12-01",
    "machine": "2-core Intel Xeon, AVX-512 VNNI and AMX",
    "rows": [
        {"what": "llama.cpp (llama-cpp-python 0.3.36, library call), packaged Q4_1 GGUF, 2 threads",
         "decode_tok_s": "107-115", "ttft": "134-138 ms"},
        {"what": "onnxruntime-genai 0.18, int4 from its builder, library call", "decode_tok_s": "113", "ttft": "118 ms"},
        {"what": "vLLM for CPU 0.32, bf16, OpenAI API, streamed", "decode_tok_s": "32", "ttft": "50 ms",
         "concurrent_8_total_tok_s": "198 (6.3x)", "concurrent_8_p95_ttft": "181 ms"},
        {"what": "plain transformers generate, fp32 (2026-11, AMD EPYC)", "decode_tok_s": "14.6",
         "concurrent_8_total_tok_s": "78 (batch 8)"},
    ],
}
VLLM_REFERENCE_8_TOTAL = 198.0  # issue #10's target for 8 concurrent streams when vLLM is not measured here


# ---------------------------------------------------------------- statistics
def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default);
    None values are skipped; None when nothing is left."""
    s = sorted(v for v in values if v is not None)
    if not s:
        return None
    k = (len(s) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: Iterable[float | None]) -> float | None:
    return percentile(values, 50)


def decode_tok_s(completion_tokens: int | None, t_first: float | None, t_last: float | None) -> float | None:
    """Tokens per second after the first token: (n - 1) tokens came in (t_last - t_first)."""
    if not completion_tokens or completion_tokens < 2 or t_first is None or t_last is None or t_last <= t_first:
        return None
    return (completion_tokens - 1) / (t_last - t_first)


def error_key(status: int | None, retry_after: bool, kind: str | None = None) -> str:
    """How a failed request is counted: '503 rejected' (the server said come back later), '500', 'connection'..."""
    if status is None:
        return kind or "error"
    if status in (429, 503) and retry_after:
        return f"{status} rejected"
    return str(status)


def summarize(requests: Sequence[dict], wall_s: float) -> dict:
    """Figures for one batch of requests that ran together over ``wall_s`` seconds.

    Each request is a dict with ``ok``, and when ok ``ttft_s``, ``e2e_s``, ``completion_tokens``,
    ``t_first``/``t_last`` (seconds from its own start); a failed one has ``error`` (see ``error_key``)."""
    ok = [r for r in requests if r.get("ok")]
    errors = Counter(r["error"] for r in requests if not r.get("ok"))
    tokens = sum(r.get("completion_tokens") or 0 for r in ok)
    return {
        "requests": len(requests), "ok": len(ok), "errors": dict(errors),
        "rejected": sum(n for k, n in errors.items() if k.endswith("rejected")),
        "wall_s": wall_s,
        "requests_per_s": len(ok) / wall_s if wall_s > 0 else None,
        "completion_tokens": tokens,
        "total_tok_s": tokens / wall_s if wall_s > 0 else None,
        "ttft_p50_s": percentile((r["ttft_s"] for r in ok), 50),
        "ttft_p95_s": percentile((r["ttft_s"] for r in ok), 95),
        "ttft_max_s": max((r["ttft_s"] for r in ok if r["ttft_s"] is not None), default=None),
        "e2e_p50_s": percentile((r["e2e_s"] for r in ok), 50),
        "e2e_p95_s": percentile((r["e2e_s"] for r in ok), 95),
        "e2e_max_s": max((r["e2e_s"] for r in ok), default=None),
        "decode_tok_s_p50": percentile((decode_tok_s(r.get("completion_tokens"), r.get("t_first"), r.get("t_last"))
                                        for r in ok), 50),
        "per_request": per_request(requests),
    }


def per_request(requests: Sequence[dict]) -> list[dict]:
    """Each request's figures for the JSON, its start relative to the first (who waited, who was starved)."""
    t0 = min((r["start"] for r in requests if "start" in r), default=0.0)
    keep = ("client", "seq", "ok", "error", "ttft_s", "e2e_s", "completion_tokens", "finish_reason")
    return [{"start_s": round(r.get("start", t0) - t0, 4), **{k: r[k] for k in keep if k in r}} for r in requests]


# ---------------------------------------------------------------- memory bandwidth
def measure_bandwidth(nbytes: int = 1 << 30, repeats: int = 3, threads: int | None = None) -> float:
    """Read bandwidth in bytes/s: the best of ``repeats`` sums over a float32 array of ``nbytes``, split over
    ``threads`` (default: every core, as decode uses them all; numpy's sum releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    a = np.ones(nbytes // 4, dtype=np.float32)  # ones, not empty: the pages must be really there
    threads = threads or machine()["nproc"]
    parts = np.array_split(a, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = min(best, time.perf_counter() - t0)
    return a.nbytes / best


def bandwidth_limit(bandwidth_bytes_s: float, weight_bytes: float) -> float:
    """Batch-of-one decode reads every weight once per token: at most bandwidth / weight bytes tokens/s."""
    return bandwidth_bytes_s / weight_bytes


def fraction_of_limit(tok_s: float | None, bandwidth_bytes_s: float, weight_bytes: float | None) -> float | None:
    if tok_s is None or not weight_bytes:
        return None
    return tok_s / bandwidth_limit(bandwidth_bytes_s, weight_bytes)


def safetensors_param_count(path: Path) -> int:
    """Parameters in a .safetensors file, from its JSON header alone (8-byte little-endian length, then JSON)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def model_param_count(folder: Path) -> int:
    return sum(safetensors_param_count(p) for p in sorted(Path(folder).glob("*.safetensors")))


def onnx_weight_bytes(onnx_file: Path) -> int:
    """Bytes of an ONNX model: the graph file plus its external data file when there is one.
    Nearly all of it is weights, each read once per decoded token (a slight over-estimate: the graph is tiny,
    and only one row of the embedding table is read per token unless it is tied to the output layer)."""
    onnx_file = Path(onnx_file)
    total = onnx_file.stat().st_size
    for data in (onnx_file.with_name(onnx_file.name + "_data"), onnx_file.with_suffix(".onnx_data")):
        if data.exists():
            total += data.stat().st_size
            break
    return total


# ---------------------------------------------------------------- server memory
def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process and its children (psutil), else of the process alone (/proc)."""
    try:
        import psutil

        p = psutil.Process(pid)
        return p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess and friends: the server is gone
        return None
    return proc_status_kb(pid, "VmRSS")


def proc_status_kb(pid: int, field: str) -> int | None:
    """A /proc/<pid>/status field in bytes (VmRSS: now; VmHWM: peak since start), None where unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class RssSampler:
    """Samples a process's RSS in a thread while a phase runs: ``with RssSampler(pid) as s: ...; s.peak``."""

    def __init__(self, pid: int | None, every_s: float = 0.1):
        self.pid, self.every_s, self.peak = pid, every_s, None
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)

    def _sample(self) -> None:
        rss = rss_bytes(self.pid) if self.pid else None
        if rss is not None:
            self.peak = max(self.peak or 0, rss)

    def __enter__(self) -> "RssSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


# ---------------------------------------------------------------- machine and output
def machine() -> dict:
    model = None
    try:
        model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                      if line.startswith("model name")), None)
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"nproc": nproc, "cpu": model or "unknown", "load_average": os.getloadavg()[0]}


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    """A table cell: '-' for nothing, seconds under 1 as ms, numbers rounded."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "%":
        return f"{value * 100:.0f}%"
    if unit == "MB":
        return f"{value / 1e6:.0f} MB"
    if unit == "x":
        return f"{value:.2f}x"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {n}" for k, n in sorted(value.items())) or "0"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are str()-ed and pipes escaped."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_sweep(sweep: Sequence[dict], path: Path, title: str) -> None:
    """Total tok/s and p95 TTFT against the number of clients, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["clients"] for r in sweep]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(xs, [r["total_tok_s"] or 0 for r in sweep], "o-")
    a.set(xlabel="concurrent clients", ylabel="total tok/s", title="throughput")
    b.plot(xs, [r["ttft_p95_s"] or 0 for r in sweep], "o-", color="tab:red")
    b.set(xlabel="concurrent clients", ylabel="p95 TTFT (s)", title="time to first token, p95")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- the report
def targets(result: dict, concurrent: int) -> list[tuple[str, str, bool | None]]:
    """Issue #10's targets against this run: (target, what was measured, met?). None: cannot tell."""
    servers = {k: v for k, v in result.get("servers", {}).items() if k.startswith("llmspace")}
    if not servers:
        return []
    best_name, best = max(servers.items(), key=lambda kv: kv[1].get("decode_tok_s") or 0)
    one = best.get("decode_tok_s")
    out: list[tuple[str, str, bool | None]] = []
    llama = result.get("llama_cpp") or {}
    if llama.get("decode_tok_s"):
        ref, where = llama["decode_tok_s"], "llama.cpp this run"
    else:
        ref, where = 107.0, "llama.cpp reference 107-115, not this run"
    out.append((f"1 stream >= llama.cpp ({where}: {ref:.0f})", f"{best_name}: {fmt(one)}",
                None if one is None else one >= ref))
    hf = (result.get("hf_generate") or {}).get("batch_1", {}).get("decode_tok_s")
    out.append(("1 stream >= 6x plain transformers generate" + (f" (6 x {hf:.1f} = {6 * hf:.0f})" if hf else ""),
                f"{best_name}: {fmt(one)}", None if not (hf and one) else one >= 6 * hf))
    vllm = next((v["concurrent"]["total_tok_s"] for k, v in result.get("servers", {}).items()
                 if k.startswith("vLLM") and v.get("concurrent")), None)
    vllm_ref, vllm_where = (vllm, "this run") if vllm else (VLLM_REFERENCE_8_TOTAL, "reference, not this run")
    for name, f in servers.items():
        c = f.get("concurrent") or {}
        total, x = c.get("total_tok_s"), c.get("x_one_stream")
        out.append((f"{concurrent} streams total >= 5x one stream", f"{name}: {fmt(total)} tok/s = {fmt(x, 'x')}",
                    None if x is None else x >= 5))
        out.append((f"{concurrent} streams total >= vLLM's ({vllm_where}: {fmt(vllm_ref, digits=0)})", f"{name}: {fmt(total)}",
                    None if total is None else total >= vllm_ref))
        ttft1, p95 = f.get("ttft_s"), c.get("ttft_p95_s")
        bound = None if ttft1 is None else (2 + concurrent - 1) * ttft1
        out.append((f"p95 TTFT < 2x single ({fmt(ttft1, 's')}) + {concurrent - 1} prefill(s) (~single TTFT each)"
                    + (f" = {fmt(bound, 's')}" if bound else ""), f"{name}: {fmt(p95, 's')}",
                    None if bound is None or p95 is None else p95 < bound))
        starved = c.get("requests", 0) - c.get("ok", 0)
        out.append(("no request starved or failed", f"{name}: {starved} of {c.get('requests', 0)}", starved == 0))
    return out


def report(result: dict, tokens: int, concurrent: int) -> str:
    """The run as markdown: decode side by side, bandwidth limit, references, sweep, targets."""
    m, bw = result["machine"], result.get("bandwidth_bytes_s")
    servers, hf, llama = result.get("servers", {}), result.get("hf_generate"), result.get("llama_cpp")
    prompt = next((f.get("prompt_tokens") for f in servers.values() if f.get("prompt_tokens")), None)
    parts = [f"## Serving, {result['time']}: nproc {m['nproc']}, {m['cpu']}, load average {m['load_average']:.1f}",
             f"SmolLM2-135M-Instruct, greedy, up to {tokens} new tokens after a {prompt or '?'}-token chat prompt; "
             f"{concurrent} concurrent streams start together. Decode tok/s: after the first token, median.", ""]
    rows = []
    for name, f in servers.items():
        c = f.get("concurrent") or {}
        rows.append([name + " (HTTP, streamed)", fmt(f.get("decode_tok_s")), fmt(f.get("ttft_s"), "s"),
                     fmt(f.get("completion_tokens"), digits=0), fmt(c.get("total_tok_s")), fmt(c.get("x_one_stream"), "x"),
                     f"{fmt(c.get('ttft_p50_s'), 's')} / {fmt(c.get('ttft_p95_s'), 's')}", fmt(c.get("errors")),
                     f"{fmt(f.get('peak_rss_1'), 'MB')} / {fmt(c.get('peak_rss'), 'MB')}",
                     fmt(fraction_of_limit(f.get("decode_tok_s"), bw, f.get("weight_bytes")), "%") if bw else "-"])
    if hf:
        b1, bn = hf.get("batch_1", {}), hf.get(f"batch_{concurrent}", {})
        rows.append(["transformers generate, fp32 (in-process; batch %d)" % concurrent, fmt(b1.get("decode_tok_s")),
                     fmt(b1.get("ttft_s"), "s"), str(tokens), fmt(bn.get("total_tok_s")),
                     fmt((bn.get("total_tok_s") or 0) / b1["decode_tok_s"], "x") if b1.get("decode_tok_s") else "-",
                     f"{fmt(bn.get('ttft_s'), 's')} (batch prefill)", "-", "-",
                     fmt(fraction_of_limit(b1.get("decode_tok_s"), bw, hf.get("weight_bytes")), "%") if bw else "-"])
    if llama and not llama.get("error"):
        rows.append([f"llama.cpp {llama.get('version', '')}, {llama['gguf']}, {llama['threads']} threads (library call)",
                     fmt(llama.get("decode_tok_s")), fmt(llama.get("ttft_s"), "s"),
                     fmt(llama.get("completion_tokens"), digits=0), "-", "-", "-", "-", "-",
                     fmt(fraction_of_limit(llama.get("decode_tok_s"), bw, llama.get("weight_bytes")), "%") if bw else "-"])
    parts.append(markdown_table(["what", "1 stream tok/s", "TTFT", "tokens", f"{concurrent} streams total tok/s",
                                 "x 1 stream", f"TTFT p50 / p95 ({concurrent})", f"errors ({concurrent})",
                                 f"peak RSS 1 / {concurrent}", "of bw limit"], rows))
    if llama and llama.get("error"):
        parts.append(f"\nllama.cpp failed: {llama['error']}")
    if bw:
        formats = {f["weights"]: f["weight_bytes"] for f in servers.values() if f.get("weight_bytes")}
        if hf:
            formats.setdefault("fp32", hf.get("weight_bytes"))
        if llama and llama.get("weight_bytes"):
            formats["GGUF Q4_1"] = llama["weight_bytes"]
        parts += ["", f"Memory-bandwidth limit for batch-of-one decode (every weight read once per token); "
                  f"read bandwidth {bw / 1e9:.1f} GB/s (numpy sum on every core; BENCHMARKS.md measured ~31 GB/s).",
                  markdown_table(["weights", "MB per token", "limit tok/s"],
                                 [[k, fmt(v, "MB"), fmt(bandwidth_limit(bw, v), digits=0)] for k, v in formats.items()])]
    if not llama or not any(k.startswith("vLLM") for k in servers):
        parts += ["", f"Reference, not this run (BENCHMARKS.md, {REFERENCE['date']}, {REFERENCE['machine']}):",
                  markdown_table(["what", "decode tok/s", "TTFT", f"{concurrent} streams total", "p95 TTFT"],
                                 [[r["what"], r.get("decode_tok_s", "-"), r.get("ttft", "-"),
                                   r.get("concurrent_8_total_tok_s", "-"), r.get("concurrent_8_p95_ttft", "-")]
                                  for r in REFERENCE["rows"]])]
    sweep = result.get("sweep") or []
    if sweep:
        parts += ["", f"Concurrency sweep on {sweep[0]['backend']}: each client sends its requests back to back.",
                  markdown_table(["clients", "requests ok/all", "req/s", "e2e p50 / p95", "TTFT p50 / p95",
                                  "total tok/s", "errors", "peak RSS"],
                                 [[r["clients"], f"{r['ok']}/{r['requests']}", fmt(r["requests_per_s"], digits=2),
                                   f"{fmt(r['e2e_p50_s'], 's')} / {fmt(r['e2e_p95_s'], 's')}",
                                   f"{fmt(r['ttft_p50_s'], 's')} / {fmt(r['ttft_p95_s'], 's')}",
                                   fmt(r["total_tok_s"]), fmt(r["errors"]), fmt(r["peak_rss"], "MB")] for r in sweep])]
    checks = targets(result, concurrent)
    if checks:
        mark = {True: "met", False: "NOT met", None: "?"}
        parts += ["", "Issue #10 targets:",
                  markdown_table(["target", "this run", ""], [[t, v, mark[ok]] for t, v, ok in checks])]
    return "\n".join(parts)
