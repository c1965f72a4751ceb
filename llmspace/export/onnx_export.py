"""``llmspace export onnx``: a chat model (plus an optional LoRA adapter) to an
ONNX folder that Transformers.js, onnxruntime and ``--backend onnx`` all load.

Steps, all inside a temporary folder renamed into place at the end (a failed
export leaves nothing half-written):
1. load the PyTorch model (merging the adapter with peft when given);
2. Optimum ``text-generation-with-past`` export -> ``onnx/model.onnx`` (fp32);
3. int8 / int4 weight quantization with onnxruntime (``quantize.py``);
4. tokenizer files with the chat template inside ``tokenizer_config.json``;
5. parity against PyTorch per dtype (``parity.py``);
6. ``README.md`` model card and ``llmspace_export.json`` (how it was made).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from llmspace.config import Settings
from llmspace.export.errors import ExportError
from llmspace.export.layout import DTYPE_FILES, META_FILE, TOKENIZER_FILES, check_layout, onnx_path, parse_dtypes
from llmspace.fsutil import swap_in

OPTIMUM_TASK = "text-generation-with-past"


@dataclass
class ExportResult:
    out: Path
    dtypes: list[str]
    files: dict[str, dict]  # dtype -> {"path", "bytes", "seconds"}
    parity: list = field(default_factory=list)  # ParityResult per dtype
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.parity)


def resolve_source(model: str, settings: Settings) -> tuple[Path | str, str, str | None]:
    """(local path or Hub id, export name, Hub id of the base for the model card)."""
    from llmspace import models

    path = Path(model).expanduser()
    if path.exists():
        return path.resolve(), (path.stem if path.is_file() else path.name), None
    spec = models.lookup(model)
    src = models.resolve(model, "chat", settings.models_dir)
    if spec is not None:
        return src, spec.name, spec.hub_id
    return src, model.rstrip("/").split("/")[-1], model


def prepare_out(out: Path, force: bool) -> Path:
    out = Path(os.path.abspath(Path(out).expanduser()))
    out = out.parent.resolve() / out.name  # not the version folder an existing ``out`` links to
    if out.exists() and not force:
        raise ExportError(f"The output folder {out} already exists. Choose another --out, or pass --force "
                          "to replace it.", param="out")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def write_tokenizer(src: Path | str, dst: Path) -> None:
    """Tokenizer files in ``dst`` with the chat template inside tokenizer_config.json
    (Transformers.js never reads chat_template.jinja)."""
    src_dir = Path(src) if isinstance(src, Path) else None
    if src_dir is not None and (src_dir / "tokenizer.json").exists() and (src_dir / "tokenizer_config.json").exists():
        for name in TOKENIZER_FILES:
            if (src_dir / name).exists():
                shutil.copy2(src_dir / name, dst / name)
    else:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(dst), save_jinja_files=False)
    tc_path = dst / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    jinja = next((p for p in (dst / "chat_template.jinja", src_dir and src_dir / "chat_template.jinja")
                  if p and p.exists()), None)
    if not tc.get("chat_template") and jinja is not None:
        tc["chat_template"] = jinja.read_text(encoding="utf-8")
        tc_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2), encoding="utf-8")
    (dst / "chat_template.jinja").unlink(missing_ok=True)


def load_torch_model(src: Path | str, adapter: Path | None, work: Path, say: Callable[[str], None]):
    """(model in fp32 eval mode, folder or Hub id Optimum should export from)."""
    from transformers import AutoModelForCausalLM

    from llmspace.export.formats import prepare_model_folder

    if isinstance(src, Path):
        src = prepare_model_folder(src, work)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype="float32")
    except (OSError, ValueError) as exc:
        raise ExportError(f"Could not load {src} as a causal language model: {exc}", param="model") from exc
    model.eval()
    if adapter is None:
        return model, src
    from llmspace.export.adapter import merge_adapter

    say(f"llmspace: merging the adapter {adapter} ...")
    model = merge_adapter(model, adapter).eval()
    merged = work / "merged"
    model.save_pretrained(str(merged), safe_serialization=True)
    write_tokenizer(src, merged)
    return model, merged


def export_onnx(model: str = "default", out: Path | str | None = None, dtypes: str | list[str] = "fp32,q8,q4",
                adapter: Path | str | None = None, force: bool = False, settings: Settings | None = None,
                parity_steps: int = 16, progress: Callable[[str], None] | None = None) -> ExportResult:
    """Export ``model`` (registry name, folder, weights file or Hub id) to ``out``
    (default ``LLMSPACE_HOME/exports/<name>``). Raises ``ExportError`` on bad input."""
    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    settings = settings or Settings.load()
    dtypes = parse_dtypes(dtypes)
    adapter = Path(adapter).expanduser().resolve() if adapter else None
    if adapter is not None and not adapter.is_dir():
        raise ExportError(f"The adapter folder {adapter} does not exist.", param="adapter")
    src, name, base_model = resolve_source(model, settings)
    out = prepare_out(Path(out) if out else settings.exports_dir / name, force)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "onnx").mkdir(parents=True)
    work = tmp / ".work"
    t_all = time.perf_counter()
    try:
        torch_model, export_src = load_torch_model(src, adapter, work, say)
        say(f"llmspace: exporting {src} to ONNX ({OPTIMUM_TASK}) ...")
        files = _export_and_quantize(export_src, tmp, work, dtypes, say)
        write_tokenizer(export_src if isinstance(export_src, Path) else src, tmp)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tmp))
        say("llmspace: checking parity with PyTorch ...")
        from llmspace.export.parity import check_parity, format_parity

        parity = check_parity(torch_model, tokenizer, tmp, dtypes, steps=parity_steps)
        shutil.rmtree(work, ignore_errors=True)
        problems = check_layout(tmp, dtypes)
        if problems:
            raise ExportError(f"The export is incomplete: {'; '.join(problems)}.")
        meta = _meta(src, adapter, base_model, dtypes, files, parity, time.perf_counter() - t_all)
        meta["name"], meta["parity_table"] = out.name, format_parity(parity)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        from llmspace.export.card import write_card

        write_card(tmp, meta)
        swap_in(tmp, out, META_FILE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"llmspace: wrote {out} in {meta['seconds']} s.")
    return ExportResult(out, dtypes, files, parity, meta["seconds"], meta)


def _export_and_quantize(export_src, tmp: Path, work: Path, dtypes: list[str], say) -> dict[str, dict]:
    from optimum.exporters.onnx import main_export

    from llmspace.export.quantize import QUANTIZERS

    raw = work / "raw"
    t0 = time.perf_counter()
    try:
        main_export(str(export_src), output=str(raw), task=OPTIMUM_TASK, device="cpu", do_validation=False,
                    library_name="transformers")
    except (ValueError, KeyError) as exc:
        raise ExportError(f"Optimum could not export {export_src}: {exc}") from exc
    seconds = {"fp32": time.perf_counter() - t0}
    for name in ("config.json", "generation_config.json"):
        if (raw / name).exists():
            shutil.copy2(raw / name, tmp / name)
    fp32 = onnx_path(tmp, "fp32")
    for p in raw.glob("model.onnx*"):  # model.onnx and, over 2 GB, model.onnx_data
        shutil.move(str(p), str(tmp / "onnx" / p.name))
    for dtype in dtypes:
        if dtype != "fp32":
            say(f"llmspace: quantizing to {dtype} ...")
            t0 = time.perf_counter()
            QUANTIZERS[dtype](fp32, onnx_path(tmp, dtype))
            seconds[dtype] = time.perf_counter() - t0
    if "fp32" not in dtypes:
        for p in (tmp / "onnx").glob("model.onnx*"):
            p.unlink()
    return {d: {"path": f"onnx/{DTYPE_FILES[d]}", "bytes": onnx_path(tmp, d).stat().st_size,
                "seconds": round(seconds[d], 2)} for d in dtypes}


def _meta(src, adapter, base_model, dtypes, files, parity, seconds) -> dict:
    import onnxruntime
    import optimum.version
    import transformers

    return {
        "task": "text-generation",
        "optimum_task": OPTIMUM_TASK,
        "source": str(src),
        "adapter": str(adapter) if adapter else None,
        "base_model": base_model,
        "dtypes": dtypes,
        "files": files,
        "parity": [r.to_dict() for r in parity],
        "seconds": round(seconds, 2),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"transformers": transformers.__version__, "optimum": optimum.version.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }
