"""Export to ONNX: layout, quantized files, parity with PyTorch, the onnx backend, bad input.

Uses a 2-layer random Llama with SmolLM2's tokenizer (see export_helpers.py), exported
once per session to fp32, q8 and q4 (~10 s).
"""

from __future__ import annotations

import json
import shutil

import pytest
from export_helpers import build_tiny_llama, cached, read_json, tiny_export

from llmspace.config import Settings
from llmspace.engine.base import GenerationParams, Message, complete
from llmspace.export.errors import ExportError
from llmspace.export.layout import DTYPE_FILES, check_layout, parse_dtypes
from llmspace.export.space import read_front_matter

PROMPT = [Message("user", "Hello there")]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, shared_models_dir):
    return tiny_export(tmp_path_factory.getbasetemp(), shared_models_dir)


@pytest.fixture(scope="module")
def tiny_src(tmp_path_factory, shared_models_dir):
    return cached(tmp_path_factory.getbasetemp(), "tiny-llama", lambda p: build_tiny_llama(p, shared_models_dir))


def test_layout_is_what_transformers_js_loads(export_dir):
    assert check_layout(export_dir, ["fp32", "q8", "q4"]) == []
    for dtype in ("fp32", "q8", "q4"):
        assert (export_dir / "onnx" / DTYPE_FILES[dtype]).stat().st_size > 0
    assert not (export_dir / "chat_template.jinja").exists()
    tc = read_json(export_dir / "tokenizer_config.json")
    assert "<|im_start|>" in tc["chat_template"] and tc["tokenizer_class"] == "GPT2Tokenizer"
    assert read_json(export_dir / "generation_config.json")["eos_token_id"] == 2
    assert read_json(export_dir / "config.json")["model_type"] == "llama"
    sizes = {d: (export_dir / "onnx" / DTYPE_FILES[d]).stat().st_size for d in ("fp32", "q8", "q4")}
    assert sizes["q8"] < sizes["fp32"] / 3 and sizes["q4"] < sizes["fp32"] / 3


def test_parity_report_passes_and_card_has_metadata(export_dir):
    meta = read_json(export_dir / "llmspace_export.json")
    parity = {p["dtype"]: p for p in meta["parity"]}
    assert set(parity) == {"fp32", "q8", "q4"} and all(p["passed"] for p in parity.values())
    assert parity["fp32"]["max_abs_diff"] < 1e-3 and parity["fp32"]["tokens_agree"] == parity["fp32"]["steps"]
    assert parity["q8"]["correlation"] > 0.95
    card = export_dir / "README.md"
    fm = read_front_matter(card)
    assert fm["library_name"] == "transformers.js" and fm["pipeline_tag"] == "text-generation"
    assert "onnx" in fm["tags"] and "Parity with PyTorch" in card.read_text()


@pytest.mark.parametrize("dtype", ["fp32", "q8", "q4"])
def test_onnxruntime_runs_each_file(export_dir, settings, dtype):
    from llmspace.engine.onnx_engine import OnnxEngine

    engine = OnnxEngine(settings, f"{export_dir}:{dtype}")
    done = complete(engine, PROMPT, GenerationParams(max_new_tokens=8))
    assert engine.dtype == dtype and engine.backend == "onnx"
    assert done.usage.completion_tokens + (done.finish_reason == "stop") >= 1
    assert done.usage.prompt_tokens == engine.count_prompt_tokens(PROMPT)
    assert set(done.timings) == {"queue_s", "ttft_s", "total_s", "tokens_per_s"}


def test_onnx_backend_matches_pytorch_greedy(export_dir, tiny_src, settings):
    from llmspace.engine.onnx_engine import OnnxEngine
    from llmspace.engine.torch_engine import TorchEngine

    onnx = OnnxEngine(settings, str(export_dir), dtype="fp32")
    torch_engine = TorchEngine(settings, str(tiny_src))
    params = GenerationParams(max_new_tokens=12)
    assert complete(onnx, PROMPT, params).text == complete(torch_engine, PROMPT, params).text


def test_onnx_backend_sampling_and_stop_strings(export_dir, settings):
    from llmspace.engine.onnx_engine import OnnxEngine

    engine = OnnxEngine(settings, str(export_dir), dtype="fp32")
    sampled = GenerationParams(max_new_tokens=10, temperature=0.8, top_p=0.9, top_k=50, seed=7)
    assert complete(engine, PROMPT, sampled).text == complete(engine, PROMPT, sampled).text
    greedy = complete(engine, PROMPT, GenerationParams(max_new_tokens=12)).text
    stop = greedy.strip().split()[2]
    cut = complete(engine, PROMPT, GenerationParams(max_new_tokens=12, stop=[stop]))
    assert cut.finish_reason == "stop" and stop not in cut.text and greedy.startswith(cut.text)


def test_onnx_backend_resolves_exports_by_name(export_dir, settings, llmspace_home):
    from llmspace.engine import create_engine
    from llmspace.errors import ModelNotFoundError

    shutil.copytree(export_dir, settings.exports_dir / "tiny")
    engine = create_engine(settings.model_copy(update={"backend": "onnx", "chat_model": "tiny"})).load()
    assert engine.dtype == "q8"  # preferred on CPU when present
    with pytest.raises(ModelNotFoundError, match="llmspace export onnx"):
        create_engine(settings.model_copy(update={"backend": "onnx", "chat_model": "nope"})).load()


def test_unknown_dtype_is_refused(settings):
    from llmspace.cli import main

    with pytest.raises(ExportError, match="Unknown dtype 'fp8'"):
        parse_dtypes("fp32,fp8")
    assert main(["export", "onnx", "--dtype", "int3"]) == 1


def test_existing_output_folder_is_refused(tiny_src, tmp_path, settings, capsys):
    from llmspace.cli import main
    from llmspace.export.onnx_export import export_onnx

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists.*--force"):
        export_onnx(str(tiny_src), out, "fp32", settings=settings)
    assert main(["export", "onnx", "--model", str(tiny_src), "--out", str(out), "--dtype", "fp32"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert (out / "keep.txt").read_text() == "mine"


def _lora(model, out, r=4):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # B starts at zero; make the adapter change the output
            p.data.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    return out


def test_adapter_is_merged_before_export(tiny_src, tmp_path, settings):
    import torch
    from transformers import AutoModelForCausalLM

    from llmspace.export.onnx_export import export_onnx

    torch.manual_seed(1)
    adapter = _lora(AutoModelForCausalLM.from_pretrained(tiny_src), tmp_path / "adapter")
    result = export_onnx(str(tiny_src), tmp_path / "merged", "fp32", adapter=adapter, settings=settings,
                         parity_steps=8, progress=lambda m: None)
    assert result.passed and result.meta["adapter"] == str(adapter)
    # the merged export no longer computes what the base model does: the adapter was applied
    from llmspace.engine.onnx_engine import OnnxEngine
    from llmspace.export.parity import torch_reference

    engine = OnnxEngine(settings, str(result.out))
    base_tokens = torch_reference(AutoModelForCausalLM.from_pretrained(tiny_src), engine.encode_prompt(PROMPT), 8)[1]
    assert list(engine._model.token_ids(engine.encode_prompt(PROMPT), 8)) != base_tokens


def test_adapter_for_another_base_model_is_refused(tiny_src, tmp_path, settings, shared_models_dir, capsys):
    from transformers import AutoModelForCausalLM

    from llmspace.cli import main
    from llmspace.export.onnx_export import export_onnx

    other = build_tiny_llama(tmp_path / "other", shared_models_dir, hidden_size=32)
    adapter = _lora(AutoModelForCausalLM.from_pretrained(other), tmp_path / "adapter")
    with pytest.raises(ExportError, match="does not fit this base model"):
        export_onnx(str(tiny_src), tmp_path / "x", "fp32", adapter=adapter, settings=settings)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.tmp*"))
    assert main(["export", "onnx", "--model", str(tiny_src), "--adapter", str(adapter), "--out",
                 str(tmp_path / "y"), "--dtype", "fp32"]) == 1
    err = capsys.readouterr().err
    assert "trained on" in err and "Traceback" not in err


def test_pth_and_bin_state_dicts_load_safely(tiny_src, tmp_path):
    import torch

    from llmspace.export.formats import load_state_dict, prepare_model_folder

    folder = tmp_path / "pth-model"
    folder.mkdir()
    shutil.copy2(tiny_src / "config.json", folder / "config.json")
    state = load_state_dict(tiny_src / "model.safetensors")
    torch.save(state, folder / "weights.pth")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "ckpt.bin")
    assert set(load_state_dict(tmp_path / "ckpt.bin")) == set(state)
    ready = prepare_model_folder(folder, tmp_path / "work")
    assert (ready / "model.safetensors").exists() and (ready / "config.json").exists()

    class Boom:  # a pickle that would run code when loaded
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"w": torch.zeros(1), "x": Boom()}, tmp_path / "evil.pth")
    with pytest.raises(ExportError, match="weights_only"):
        load_state_dict(tmp_path / "evil.pth")


def test_export_cli_writes_report(tiny_src, tmp_path, capsys):
    from llmspace.cli import main

    out = tmp_path / "cli-export"
    assert main(["export", "onnx", "--model", str(tiny_src), "--dtype", "int8,q8", "--out", str(out),
                 "--steps", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and list(report["files"]) == ["int8", "q8"]
    assert report["files"]["int8"]["path"] == "onnx/model_int8.onnx"
    assert not (out / "onnx" / "model.onnx").exists() and check_layout(out, ["int8", "q8"]) == []


def test_default_settings_name_the_export_folder(settings):
    assert isinstance(settings, Settings) and settings.exports_dir.name == "exports"
