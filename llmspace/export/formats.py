"""Model files: save as ``.safetensors``; load ``.safetensors``, ``.bin`` and
``.pth``/``.pt`` state dicts safely.

``torch.load`` unpickles, and a pickle can run any code: we always pass
``weights_only=True``, which only rebuilds tensors and plain containers, so a
booby-trapped checkpoint fails to load instead of running.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llmspace.export.errors import ExportError

STATE_DICT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
STANDARD_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                    "pytorch_model.bin.index.json")


def load_state_dict(path: Path) -> dict:
    """Tensors by name from a .safetensors, .bin or .pth/.pt file (never unpickles code)."""
    path = Path(path)
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise ExportError(f"{path.name}: unknown weights format. Use one of {', '.join(STATE_DICT_SUFFIXES)}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import pickle

    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ExportError(f"{path} holds more than tensors (refused by torch.load(weights_only=True): "
                          f"{str(exc).splitlines()[0]}). Re-save it as a plain state dict or .safetensors.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint {"state_dict": ..., "epoch": ...}
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ExportError(f"{path} is not a state dict (name -> tensor).")
    return state


def save_safetensors(model, folder: Path) -> Path:
    """``save_pretrained`` in safetensors form (shared tensors handled by transformers)."""
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder / "model.safetensors"


def prepare_model_folder(src: Path, work: Path) -> Path:
    """A folder transformers loads: ``src`` itself when its weights use a standard
    name, else a copy in ``work`` whose ``.pth``/``.pt``/odd-named weights were
    loaded safely and re-saved as ``model.safetensors``."""
    src = Path(src)
    if src.is_file():
        folder, weights = src.parent, src
    else:
        folder = src
        if any((src / n).exists() for n in STANDARD_WEIGHTS):
            return src
        found = sorted(p for p in src.iterdir() if p.suffix in STATE_DICT_SUFFIXES)
        if not found:
            raise ExportError(f"{src} has no weights (.safetensors, .bin or .pth).")
        weights = found[0]
    if not (folder / "config.json").exists():
        raise ExportError(f"{folder} has no config.json beside the weights: a state dict needs the model's "
                          "config.json to be rebuilt.")
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_config(config)
    state = load_state_dict(weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing or unexpected:
        raise ExportError(f"{weights.name} does not match {folder / 'config.json'}: "
                          f"missing {missing[:3]}, unexpected {unexpected[:3]}.")
    out = Path(work) / "model"
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, out)
    for p in folder.iterdir():
        if p.is_file() and p.suffix not in STATE_DICT_SUFFIXES and not (out / p.name).exists():
            shutil.copy2(p, out / p.name)
    return out


def _tied_keys(model) -> set[str]:
    keys = set()
    if getattr(model.config, "tie_word_embeddings", False):
        keys.add("lm_head.weight")
    return keys


def adapter_base(adapter: Path) -> str | None:
    try:
        return json.loads((Path(adapter) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None
