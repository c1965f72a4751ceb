"""An onnxruntime-genai model of the chat model, with the packaged GGUF's own 4-bit blocks.

``build_genai_model(settings)`` writes ``LLMSPACE_HOME/exports/<name>-genai`` (atomic: a temporary folder,
then ``fsutil.swap_in``) in two steps, both without a network:

1. onnxruntime-genai's model builder writes an **fp32** genai model (a Llama graph with the fused
   GroupQueryAttention, rotary and layer-norm ops that make genai fast on CPU, and ``genai_config.json``)
   from the converted safetensors folder. The builder of onnxruntime-genai 0.18 imports two classes that
   exist only in transformers 5 and reads a transformers-5 config field; ``_BUILDER_SHIM`` supplies both
   so it runs in llmspace's own environment (transformers 4.57). The graph and weights it writes are
   byte-identical to what the builder writes in its own venv with transformers 5 (checked 2026-12);
   ``LLMSPACE_GENAI_BUILDER_PYTHON`` may name such a venv's python instead.
2. ``faithful_quantize`` replaces every fp32 ``MatMul`` whose weight is a dequantized GGUF tensor with
   ``MatMulNBits`` holding *the same* blocks: GGUF Q4_1 (blocks of 32 along the input, ``w = d*q + m``,
   ``q`` in 0..15) becomes 4-bit ``MatMulNBits`` with scale ``d`` and zero point 0, plus ``m`` times each
   block's input sum (a small ``[K/32, N]`` MatMul), since ``MatMulNBits`` zero points are integers and a
   Q4_1 minimum is not a multiple of its scale; GGUF Q8_0 (the tied embedding used as the LM head) becomes
   8-bit ``MatMulNBits`` with zero point 128, exactly. The weights are recovered from the fp32 values
   (bit-exact, checked per tensor), so any model converted from a Q4_1/Q8_0 GGUF works; a tensor that is
   not exactly such blocks stays fp32 (the report says which).

The builder's own ``-p int4`` re-quantizes the dequantized weights symmetrically (and the LM head to 4 bits
too): fast but it changes greedy output within a few tokens; the faithful model keeps PyTorch's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from llmspace.export.errors import ExportError

BLOCK = 32
META_FILE = "llmspace_genai.json"
GENAI_FILES = ("genai_config.json", "model.onnx", "model.onnx.data")

# Runs onnxruntime-genai's builder (0.18) under transformers 4.57: see the module docstring.
_BUILDER_SHIM = r"""
import runpy, sys
import transformers
names = ["Gemma3ForConditionalGeneration", "Lfm2VlForConditionalGeneration", "Mistral3ForConditionalGeneration",
         "Qwen2_5_VLForConditionalGeneration", "Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration",
         "Qwen3VLForConditionalGeneration"]
missing = []
for name in names:
    try:
        getattr(sys.modules["transformers"], name)
    except (AttributeError, ImportError):
        missing.append(name)
for name in missing:  # only the names are imported; the llama path never uses them
    sys.modules["transformers"].__dict__[name] = type(name, (), {})
from transformers import AutoConfig
_orig = AutoConfig.from_pretrained.__func__
def _from_pretrained(cls, *a, **k):  # transformers 5 always has rope_scaling/rope_parameters; 4.57 may say None
    out = _orig(cls, *a, **k)
    cfg = out[0] if isinstance(out, tuple) else out
    if getattr(cfg, "rope_scaling", None) is None:
        cfg.rope_scaling = {"rope_type": "default", "rope_theta": getattr(cfg, "rope_theta", 10000.0)}
    return out
AutoConfig.from_pretrained = classmethod(_from_pretrained)
sys.argv = ["builder"] + sys.argv[1:]
runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")
"""


@dataclass
class QuantReport:
    q4_1: list[str] = field(default_factory=list)
    q8_0: list[str] = field(default_factory=list)
    kept_fp32: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"q4_1": len(self.q4_1), "q8_0": len(self.q8_0), "kept_fp32": self.kept_fp32}


# ---------------------------------------------------------------- recovering GGUF blocks
def recover_q4_1(w_nk):
    """``(q uint8 [N, K/32, 32], d float32 [N, K/32], m float32 [N, K/32])`` with ``d*q + m == w`` bit for bit
    in float32 (how gguf-py dequantizes Q4_1), or None when ``w`` (shape ``[N, K]``) is not such blocks."""
    import numpy as np

    n, k = w_nk.shape
    if k % BLOCK:
        return None
    blocks = w_nk.reshape(n, k // BLOCK, BLOCK).astype(np.float32)
    m = blocks.min(axis=-1)
    d = ((blocks.max(axis=-1) - m) / np.float32(15)).astype(np.float16).astype(np.float32)  # GGUF keeps d in fp16
    safe = np.where(d == 0, np.float32(1), d)
    q = np.rint((blocks - m[..., None]) / safe[..., None])
    if q.min() < 0 or q.max() > 15:
        return None
    q = q.astype(np.float32)
    if not np.array_equal(d[..., None] * q + m[..., None], blocks):
        return None
    return q.astype(np.uint8), d, m


def recover_q8_0(w_nk):
    """``(q int8 [N, K/32, 32], d float32 [N, K/32])`` with ``d*q == w`` bit for bit, or None."""
    import numpy as np

    n, k = w_nk.shape
    if k % BLOCK:
        return None
    blocks = w_nk.reshape(n, k // BLOCK, BLOCK).astype(np.float32)
    d = (np.abs(blocks).max(axis=-1) / np.float32(127)).astype(np.float16).astype(np.float32)
    safe = np.where(d == 0, np.float32(1), d)
    q = np.rint(blocks / safe[..., None])
    if q.min() < -127 or q.max() > 127 or not np.array_equal(d[..., None] * q, blocks):
        return None
    return q.astype(np.int8), d


def _pack_u4(q):
    """uint8 values 0..15 ``[..., 2j]`` (low nibble) and ``[..., 2j+1]`` (high nibble) into bytes."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype("uint8")


# ---------------------------------------------------------------- graph rewrite
def faithful_quantize(src: Path, dst: Path, accuracy_level: int = 4,
                      say: Callable[[str], None] | None = None) -> QuantReport:
    """Rewrite the fp32 genai model ``src/model.onnx`` into ``dst/model.onnx`` (+ ``.data``) with the GGUF blocks.

    ``accuracy_level``: MatMulNBits' compute type on CPU (4: int8 activations per block, the fast path;
    1: fp32 activations)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    say = say or (lambda _msg: None)
    model = onnx.load(str(src / "model.onnx"))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    report = QuantReport()
    new_nodes, drop_inits, new_inits = [], set(), []
    blocksum_of: dict[str, str] = {}  # MatMul input -> its per-block sums (shared by gate/up)

    def const(name: str, arr) -> str:
        new_inits.append(numpy_helper.from_array(arr, name))
        return name

    shape_name = const("llmspace_blocks_shape", np.array([0, 0, -1, BLOCK], dtype=np.int64))
    axes_name = const("llmspace_last_axis", np.array([-1], dtype=np.int64))

    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    # a tied embedding reads the LM head's weight through Transpose -> Gather: give it its own [vocab, hidden]
    # table (float32, exact) so the LM head's fp32 copy can go
    embed_tables: dict[str, str] = {}
    for node in list(graph.node):
        if node.op_type == "Transpose" and node.input[0] in inits and \
                all(u.op_type == "Gather" for u in users.get(node.output[0], [])):
            table = const(f"{node.input[0]}.embedding", np.ascontiguousarray(numpy_helper.to_array(inits[node.input[0]]).T))
            for gather in users.get(node.output[0], []):
                gather.input[0] = table
            embed_tables[node.name] = table
    for node in graph.node:
        if node.name in embed_tables:
            continue  # the Transpose is gone
        if node.op_type != "MatMul" or node.input[1] not in inits:
            new_nodes.append(node)
            continue
        w_init = inits[node.input[1]]
        w = numpy_helper.to_array(w_init)  # [K, N]
        if w.ndim != 2 or w.dtype != np.float32:
            new_nodes.append(node)
            continue
        k, n = w.shape
        wt = np.ascontiguousarray(w.T)  # [N, K]: blocks run along K, as in GGUF
        base = node.name.replace("/", "_").strip("_") or w_init.name
        attrs = {"K": k, "N": n, "block_size": BLOCK, "accuracy_level": accuracy_level}
        q4 = recover_q4_1(wt)
        if q4 is not None:
            q, d, m = q4
            s = const(f"{base}.scales", d.reshape(-1))
            # MatMulNBits' default zero point 8: w = d*(q - 8) + (m + 8d). Centred codes matter at accuracy level 4
            # (int8 activations): zero point 0 with the whole minimum in the correction doubles the error measured
            inputs = [node.input[0], const(f"{base}.q", _pack_u4(q)), s]
            m = m + np.float32(8) * d
            main_out = f"{node.output[0]}/nbits"
            new_nodes.append(helper.make_node("MatMulNBits", inputs, [main_out], name=f"{node.name}/MatMulNBits",
                                              domain="com.microsoft", bits=4, **attrs))
            src_in = node.input[0]
            if src_in not in blocksum_of:
                blocks = f"{src_in}/llmspace_blocks"
                sums = f"{src_in}/llmspace_blocksum"
                new_nodes.append(helper.make_node("Reshape", [src_in, shape_name], [blocks], name=f"{blocks}/Reshape"))
                new_nodes.append(helper.make_node("ReduceSum", [blocks, axes_name], [sums], name=f"{sums}/ReduceSum",
                                                  keepdims=0))
                blocksum_of[src_in] = sums
            mins = const(f"{base}.mins", np.ascontiguousarray(m.T))  # [kb, N]
            corr = f"{node.output[0]}/mins"
            new_nodes.append(helper.make_node("MatMul", [blocksum_of[src_in], mins], [corr], name=f"{node.name}/Mins"))
            new_nodes.append(helper.make_node("Add", [main_out, corr], [node.output[0]], name=f"{node.name}/AddMins"))
            drop_inits.add(w_init.name)
            report.q4_1.append(node.name)
            continue
        q8 = recover_q8_0(wt)
        if q8 is not None:
            q, d = q8
            b = const(f"{base}.q8", (q.astype(np.int16) + 128).astype(np.uint8))  # [N, kb, 32]
            s = const(f"{base}.scales", d.reshape(-1))
            inputs = [node.input[0], b, s]  # the default zero point of 8 bits is 128
            new_nodes.append(helper.make_node("MatMulNBits", inputs, list(node.output),
                                              name=f"{node.name}/MatMulNBits", domain="com.microsoft", bits=8, **attrs))
            drop_inits.add(w_init.name)
            report.q8_0.append(node.name)
            continue
        report.kept_fp32.append(node.name)
        new_nodes.append(node)
    say(f"{len(report.q4_1)} Q4_1 and {len(report.q8_0)} Q8_0 MatMuls rewritten, {len(report.kept_fp32)} kept fp32")
    del graph.node[:]
    graph.node.extend(new_nodes)
    still_read = {name for node in new_nodes for name in node.input}
    kept = [i for i in graph.initializer if i.name not in drop_inits or i.name in still_read]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    dst.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(dst / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx.data", size_threshold=1024)
    return report


# ---------------------------------------------------------------- the builder
def builder_command(src: Path, out: Path, precision: str = "fp32", cache: Path | None = None,
                    python: str | None = None, extra: list[str] | None = None) -> list[str]:
    """The command that runs onnxruntime-genai's builder: in llmspace's interpreter through the shim, or
    ``python`` (e.g. a venv with transformers 5: ``LLMSPACE_GENAI_BUILDER_PYTHON``) as it is."""
    args = ["-i", str(src), "-o", str(out), "-p", precision, "-e", "cpu", "-c", str(cache or out / ".cache")]
    if extra:
        args += ["--extra_options", *extra]
    python = python or os.environ.get("LLMSPACE_GENAI_BUILDER_PYTHON")
    if python:
        return [python, "-m", "onnxruntime_genai.models.builder", *args]
    return [sys.executable, "-c", _BUILDER_SHIM, *args]


def run_builder(src: Path, out: Path, precision: str = "fp32", python: str | None = None,
                extra: list[str] | None = None) -> float:
    """Run the builder; seconds taken. Raises ``ExportError`` with the builder's last lines."""
    t0 = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(builder_command(src, out, precision, python=python, extra=extra),
                          capture_output=True, text=True, env=env)
    shutil.rmtree(out / ".cache", ignore_errors=True)
    if proc.returncode != 0 or not (out / "genai_config.json").exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise ExportError(f"onnxruntime-genai's model builder failed on {src} (exit {proc.returncode}):\n{tail}\n"
                          "Install it with `pip install onnxruntime-genai`, or build in its own venv "
                          "(pip install onnxruntime-genai 'transformers>=5' torch==2.13.0 onnx onnx-ir) and set "
                          "LLMSPACE_GENAI_BUILDER_PYTHON to that venv's python.")
    return time.perf_counter() - t0


def genai_export_dir(settings, model: str | None = None) -> Path:
    from llmspace import models

    ref = model or settings.chat_model
    spec = models.lookup(ref)
    name = spec.name if spec else Path(ref).name
    return Path(settings.exports_dir) / f"{name}-genai"


def build_genai_model(settings, model: str | None = None, out: Path | None = None, accuracy_level: int = 4,
                      force: bool = False, say: Callable[[str], None] | None = None) -> Path:
    """Build (once) the faithful genai model of ``model`` (default: the chat model) and return its folder."""
    from llmspace import models
    from llmspace.fsutil import current, swap_in

    say = say or (lambda _msg: None)
    out = Path(out) if out else genai_export_dir(settings, model)
    existing = current(out)
    if existing is not None and (existing / META_FILE).exists() and not force:
        return existing
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError as exc:
        raise ExportError("onnxruntime-genai is not installed: `pip install onnxruntime-genai` "
                          "(it installs beside onnxruntime 1.32 without changing it).") from exc
    src = models.resolve(model or settings.chat_model, "chat", settings.models_dir)
    if not isinstance(src, Path):
        raise ExportError(f"{src} is a Hub id; the genai build needs a local model folder.")
    t0 = time.perf_counter()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fp32 = tmp / ".fp32"
        say("running onnxruntime-genai's model builder (fp32) ...")
        build_s = run_builder(src, fp32)
        say("rewriting MatMuls with the GGUF's own blocks ...")
        report = faithful_quantize(fp32, tmp, accuracy_level=accuracy_level, say=say)
        config = json.loads((fp32 / "genai_config.json").read_text())
        (tmp / "genai_config.json").write_text(json.dumps(config, indent=4))
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
            if (fp32 / name).exists():
                shutil.copy2(fp32 / name, tmp / name)
        shutil.rmtree(fp32)
        meta = {"source": str(src), "accuracy_level": accuracy_level, "builder_s": round(build_s, 1),
                "total_s": round(time.perf_counter() - t0, 1), "matmuls": report.to_dict(),
                "bytes": sum(p.stat().st_size for p in tmp.iterdir() if p.is_file())}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        out.parent.mkdir(parents=True, exist_ok=True)
        swap_in(tmp, out, META_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    return current(out) or out
