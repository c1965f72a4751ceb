"""The one-time conversion of the packaged GGUF and the registry."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmspace import models
from llmspace.errors import ModelNotFoundError


def test_registry_aliases_and_unknown_names(tmp_path):
    assert models.lookup("default").name == "smollm2-135m-instruct"
    assert models.lookup("MiniLM").name == "all-minilm-l6-v2"
    with pytest.raises(ModelNotFoundError, match="Unknown chat model"):
        models.resolve("no-such-model", "chat", tmp_path)
    with pytest.raises(ModelNotFoundError, match="is a embedding model|is a embedding"):
        models.resolve("minilm", "chat", tmp_path)
    assert models.resolve("someone/some-model", "chat", tmp_path) == "someone/some-model"  # Hub id, for users online


def test_embedding_model_comes_from_its_package(tmp_path):
    p = models.resolve("all-minilm-l6-v2", "embedding", tmp_path)
    assert (Path(p) / "modules.json").exists()


@pytest.mark.slow
def test_converted_folder_is_portable(session_services):
    """Read the converted tokenizer with a second runtime (the `tokenizers`
    library alone, as Transformers.js and vLLM do) and check what DESIGN.md lists."""
    from tokenizers import Tokenizer

    folder = Path(models.resolve("default", "chat", session_services.settings.models_dir))
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "GPT2Tokenizer" and cfg["eos_token"] == "<|im_end|>"
    assert cfg["add_bos_token"] is False and "<|im_start|>" in cfg["chat_template"]
    assert not (folder / "chat_template.jinja").exists()
    meta = json.loads((folder / models.META_FILE).read_text())
    assert meta["conversion_version"] == models.CONVERSION_VERSION
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = tok.encode("Hello world, 你好", add_special_tokens=True).ids
    assert ids[0] != 1  # no BOS prepended
    assert tok.decode(ids) == "Hello world, 你好"  # no Ġ/Ċ artefacts
    assert tok.token_to_id("<|im_end|>") == 2


CONVERT = """
import sys
from pathlib import Path
from llmspace import models
models.ensure_converted(models.REGISTRY["smollm2-135m-instruct"], Path(sys.argv[1]), progress=lambda m: print(m))
"""


@pytest.mark.slow
def test_two_processes_convert_once_and_leftovers_are_cleaned(tmp_path):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / ".smollm2-135m-instruct.tmp").mkdir()  # debris of a killed conversion
    (models_dir / ".smollm2-135m-instruct.tmp" / "partial.bin").write_text("x")
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT, str(models_dir)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum("converting" in o for o in outs) == 1, outs
    names = sorted(p.name for p in models_dir.iterdir() if not p.name.endswith(".lock"))
    assert names == [".smollm2-135m-instruct.versions", "smollm2-135m-instruct"]  # the link and its one version
    assert len(list((models_dir / ".smollm2-135m-instruct.versions").iterdir())) == 1
    assert models.is_converted(models.REGISTRY["smollm2-135m-instruct"], models_dir)
