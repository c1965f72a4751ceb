"""Builders shared by the export, browser and Space tests (plain functions; the
test modules wrap them in fixtures). Everything is built locally: a 2-layer
random Llama with SmolLM2's real tokenizer (vocab 49152, chat template), so an
export takes seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llmspace.config import Settings

TINY = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=2,
            tie_word_embeddings=True)


def smollm2_dir(models_dir: Path) -> Path:
    from llmspace import models

    return Path(models.resolve("default", "chat", models_dir))


def build_tiny_llama(out: Path, models_dir: Path, seed: int = 0, hidden_size: int = 64) -> Path:
    """A random 2-layer Llama saved as safetensors, with the converted SmolLM2 tokenizer files.
    ``initializer_range=0.2`` spreads the logits, so greedy choices are far from ties
    (the browser must reproduce them token for token)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**TINY, "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size},
                      initializer_range=0.2)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    src = smollm2_dir(models_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy2(src / name, out / name)
    return out


def cached(base: Path, name: str, build) -> Path:
    """``base/name`` built once per test session (several test modules share it)."""
    target = base / name
    if not (target / ".done").exists():
        shutil.rmtree(target, ignore_errors=True)
        build(target)
        (target / ".done").write_text("ok")
    return target


def tiny_export(base: Path, models_dir: Path, dtypes: str = "fp32,q8,q4") -> Path:
    """The tiny Llama exported (all three dtypes) into ``base/tiny-export``."""
    from llmspace.export.onnx_export import export_onnx

    src = cached(base, "tiny-llama", lambda p: build_tiny_llama(p, models_dir))

    def build(target: Path) -> None:
        settings = Settings.load(env={}, home=base / "home")
        export_onnx(str(src), target, dtypes, settings=settings, progress=lambda m: None)

    return cached(base, "tiny-export", build)


def tiny_llama(base: Path, models_dir: Path) -> Path:
    """The tiny random Llama, built once per test session into ``base/tiny-llama``."""
    return cached(base, "tiny-llama", lambda p: build_tiny_llama(p, models_dir))


def tiny_fp32_export(base: Path, models_dir: Path) -> Path:
    """The tiny Llama's fp32 ONNX export (parity checked over 4 steps) into ``base/tiny-export-fp32``."""
    from llmspace.export.onnx_export import export_onnx

    src = tiny_llama(base, models_dir)

    def build(target: Path) -> None:
        settings = Settings.load(env={}, home=base / "home-fp32")
        export_onnx(str(src), target, "fp32", settings=settings, parity_steps=4, progress=lambda m: None)

    return cached(base, "tiny-export-fp32", build)


def embedding_export(base: Path, models_dir: Path) -> Path:
    from llmspace.export.embedding import export_embedding

    def build(target: Path) -> None:
        home = base / "emb-home"
        (home / "models").mkdir(parents=True, exist_ok=True)
        settings = Settings.load(env={}, home=home)
        export_embedding(None, target, settings=settings, progress=lambda m: None)

    return cached(base, "all-minilm-l6-v2", build)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
