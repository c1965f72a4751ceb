"""LoRA adapters: check one fits the base model, then merge it (peft) before export.

The check reads the adapter's tensors and compares each LoRA matrix with the
module it patches, so an adapter trained on another base model is refused with
a message naming that model, instead of peft's size-mismatch traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmspace.export.errors import ExportError
from llmspace.export.formats import load_state_dict


def adapter_weights(adapter: Path) -> dict:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (adapter / name).exists():
            return load_state_dict(adapter / name)
    raise ExportError(f"{adapter} has no adapter_model.safetensors or adapter_model.bin.", param="adapter")


def check_adapter(adapter: Path, model) -> dict:
    """Raise ``ExportError`` unless every LoRA matrix in ``adapter`` fits ``model``; return its config."""
    adapter = Path(adapter)
    cfg_path = adapter / "adapter_config.json"
    if not cfg_path.exists():
        raise ExportError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json). Pass the folder "
                          "`llmspace train` wrote.", param="adapter")
    config = json.loads(cfg_path.read_text())
    declared = config.get("base_model_name_or_path") or "an unnamed base model"
    modules = dict(model.named_modules())
    for key, tensor in adapter_weights(adapter).items():
        if ".lora_" not in key:
            continue
        name, _, rest = key.removeprefix("base_model.model.").partition(".lora_")
        module = modules.get(name)
        problem = None
        if module is None:
            problem = f"it patches {name}, which this base model does not have"
        elif rest.startswith(("A.", "B.")) and hasattr(module, "in_features"):
            want = module.in_features if rest.startswith("A.") else module.out_features
            got = tensor.shape[1] if rest.startswith("A.") else tensor.shape[0]
            if got != want:
                problem = f"{key} has shape {tuple(tensor.shape)}, but {name} is {module.in_features}->{module.out_features}"
        elif rest.startswith(("embedding_A", "embedding_B")) and hasattr(module, "num_embeddings"):
            want = module.num_embeddings if rest.startswith("embedding_A") else module.embedding_dim
            got = tensor.shape[1] if rest.startswith("embedding_A") else tensor.shape[0]
            if got != want:
                problem = f"{key} has shape {tuple(tensor.shape)}, but {name} is {module.num_embeddings}x{module.embedding_dim}"
        if problem:
            raise ExportError(f"The adapter {adapter} does not fit this base model: {problem}. It was trained "
                              f"on {declared}; export it with `--model {declared}`.", param="adapter")
    return config


def merge_adapter(model, adapter: Path):
    """The base model with the LoRA weights folded in (a plain transformers model again)."""
    from peft import PeftModel

    check_adapter(adapter, model)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
