"""Export figures for the default model (SmolLM2-135M-Instruct):

    .venv/bin/python benchmarks/bench_export.py [--dtypes fp32,q8,q4,int8] [--runs 3] [--tokens 64]
                                                [--browser-dtypes q8,q4,int8] [--no-browser] [--keep DIR]

1. export: Optimum export and quantization time, file size per dtype, parity vs PyTorch;
2. server: greedy decode of --tokens new tokens after a ~40-token chat prompt, tok/s
   and time to first token per ONNX dtype next to PyTorch in the same run (medians of
   --runs), with the fraction of the memory-bandwidth limit for each weight format;
3. browser: headless Chromium (WASM) on the same export: load time (cold, then
   from the browser cache) and tok/s, via the /web/ page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from llmspace.device import cpu_name

PROMPT = "Explain in a few sentences why the sky is blue, as you would to a curious ten-year-old."
BANDWIDTH_GBS = 31.0  # measured read bandwidth of this machine kind (BENCHMARKS.md)


def decode_figures(engines: dict, messages, tokens: int, runs: int) -> dict:
    """Round-robin over the engines, ``runs`` rounds, medians: the machine is shared, so
    a burst of someone else's load hits every backend alike rather than one."""
    from llmspace.engine.base import GenerationParams, complete

    params = GenerationParams(max_new_tokens=tokens)
    for engine in engines.values():
        complete(engine, messages, GenerationParams(max_new_tokens=4))  # load + warm-up
    done = {name: [] for name in engines}
    for _ in range(runs):
        for name, engine in engines.items():
            done[name].append(complete(engine, messages, params))
    return {name: {"tok_s": statistics.median(r.timings["tokens_per_s"] for r in rows),
                   "ttft_s": statistics.median(r.timings["ttft_s"] for r in rows),
                   "tokens": rows[0].usage.completion_tokens, "prompt_tokens": rows[0].usage.prompt_tokens,
                   "load_s": engines[name].load_seconds}
            for name, rows in done.items()}


def serve_in_thread(settings):
    import uvicorn

    from llmspace.serve.web_routes import standalone_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(standalone_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def browser_figures(settings, name: str, dtypes: list[str], tokens: int) -> dict:
    from playwright.sync_api import sync_playwright

    server, url = serve_in_thread(settings)
    out = {}
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", headless=True,
                                                   args=flags)
        for dtype in dtypes:
            loads = []
            for _ in range(2):  # cold, then from the browser cache
                page = ctx.new_page()
                page.goto(f"{url}/web/?device=wasm&dtype={dtype}&model={name}")
                page.wait_for_selector("#load:not([disabled])")
                page.click("#load")
                page.wait_for_selector("#status[data-status=ready]", timeout=600_000)
                loads.append(float(page.get_attribute("#status", "data-load-s")))
                if len(loads) == 2:
                    page.fill("#max-tokens", str(tokens))
                    page.fill("#prompt", PROMPT)
                    page.click("#send")
                    page.wait_for_selector("#history li.assistant[data-state=done]", timeout=600_000)
                    stats = page.inner_text("#history li.assistant .stats")
                    out[dtype] = {"load_cold_s": loads[0], "load_cached_s": loads[1], "stats": stats,
                                  "tok_s": float(stats.split("·")[2].split()[0]),
                                  "ttft_s": float(stats.split("·")[1].split()[2])}
                page.close()
        ctx.close()
    server.should_exit = True
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", default="fp32,q8,q4,int8")
    ap.add_argument("--browser-dtypes", default="q8,q4,int8")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--keep", help="LLMSPACE_HOME to use and keep (default: a temporary one)")
    args = ap.parse_args()

    from llmspace.config import Settings
    from llmspace.engine.base import Message
    from llmspace.engine.onnx_engine import OnnxEngine
    from llmspace.engine.torch_engine import TorchEngine
    from llmspace.export.onnx_export import export_onnx
    from llmspace.export.parity import format_parity

    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-export-"))
    user_models = Path(os.environ.get("LLMSPACE_HOME", "~/.cache/llmspace")).expanduser() / "models"
    if not (home / "models").exists() and user_models.exists():
        home.mkdir(parents=True, exist_ok=True)
        (home / "models").symlink_to(user_models, target_is_directory=True)  # reuse the converted model
    settings = Settings.load(env={}, home=home)
    print(f"machine: {os.cpu_count()} cores, {cpu_name()}; torch threads {__import__('torch').get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f} (the cores are shared: compare ratios within this run)")

    out = settings.exports_dir / "smollm2-135m-instruct"
    t0 = time.perf_counter()
    result = export_onnx("default", out, args.dtypes, force=True, settings=settings, progress=lambda m: None)
    print(f"\n== export (total {time.perf_counter() - t0:.1f} s, includes parity) ==")
    for dtype, info in result.files.items():
        print(f"  {dtype:5s} {info['bytes'] / 1e6:8.1f} MB  {info['seconds']:6.1f} s  {info['path']}")
    print(format_parity(result.parity))

    messages = [Message("user", PROMPT)]
    print(f"\n== server decode: {args.tokens} new tokens, greedy, batch 1, median of {args.runs} ==")
    engines = {"torch fp32": TorchEngine(settings, "default"),
               **{f"onnx {d}": OnnxEngine(settings, str(out), dtype=d) for d in result.dtypes}}
    rows = decode_figures(engines, messages, args.tokens, args.runs)
    base = rows["torch fp32"]["tok_s"]
    sizes = {"torch fp32": 538e6, **{f"onnx {d}": i["bytes"] for d, i in result.files.items()}}
    print(f"  prompt {rows['torch fp32']['prompt_tokens']} tokens")
    print(f"  {'backend':11s} {'load s':>7s} {'tok/s':>7s} {'x torch':>8s} {'ttft s':>7s} {'% bw limit':>10s}")
    for name, r in rows.items():
        limit = BANDWIDTH_GBS * 1e9 / sizes[name]
        print(f"  {name:11s} {r['load_s']:7.2f} {r['tok_s']:7.1f} {r['tok_s'] / base:8.2f} {r['ttft_s']:7.3f} "
              f"{100 * r['tok_s'] / limit:9.0f}%")

    if not args.no_browser:
        if not Path("/usr/bin/chromium").exists():
            print("\n(browser: skipped, /usr/bin/chromium is not installed)")
        else:
            bdtypes = [d for d in args.browser_dtypes.split(",") if d in result.dtypes]
            print(f"\n== browser: headless Chromium, WASM, {args.tokens} new tokens ==")
            for dtype, b in browser_figures(settings, out.name, bdtypes, args.tokens).items():
                server = rows[f"onnx {dtype}"]["tok_s"]
                print(f"  {dtype:5s} load {b['load_cold_s']:5.1f} s cold, {b['load_cached_s']:5.1f} s cached; "
                      f"{b['tok_s']:5.1f} tok/s (server onnx {server:.1f}, x{b['tok_s'] / server:.2f}); "
                      f"ttft {b['ttft_s']:.2f} s")
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
