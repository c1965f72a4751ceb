"""``llmspace push`` / ``space push``: dry run without a network, clear errors without a token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from llmspace.export.errors import HubError
from llmspace.hub import plan_files, push


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "export"
    (d / "onnx").mkdir(parents=True)
    (d / "onnx" / "model.onnx").write_bytes(b"\0" * 3 * 2**20)
    (d / "config.json").write_text("{}")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "x.pyc").write_bytes(b"junk")
    return d


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored `huggingface-cli login` either
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))


def test_dry_run_lists_files_and_sizes_without_network(folder, no_token, capsys):
    from llmspace.cli import main

    assert plan_files(folder) == [("config.json", 2), ("onnx/model.onnx", 3 * 2**20)]
    assert main(["push", str(folder), "--repo", "alice/tiny-onnx", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "onnx/model.onnx" in out and "3.00 MiB" in out and "__pycache__" not in out
    assert "dry run: would upload 2 files" in out


def test_push_without_token_says_how_to_log_in(folder, no_token, capsys):
    from llmspace.cli import main

    with pytest.raises(HubError, match="huggingface-cli login"):
        push(folder, "alice/tiny-onnx")
    assert main(["push", str(folder), "--repo", "alice/tiny-onnx"]) == 1
    err = capsys.readouterr().err
    assert "No Hugging Face token found" in err and "HF_TOKEN" in err and "Traceback" not in err


def test_bad_repo_and_folder(folder, tmp_path):
    with pytest.raises(HubError, match="owner/name"):
        push(folder, "not a repo", dry_run=True)
    with pytest.raises(HubError, match="not a folder"):
        push(tmp_path / "missing", "alice/x", dry_run=True)
    with pytest.raises(HubError, match="front matter"):
        push(folder, "alice/space", repo_type="space", dry_run=True)


def test_unreachable_hub_is_a_clear_error_and_the_token_never_shows(folder, tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "hf_" + "s3cretTokenValue" * 2
    env = {**os.environ, "HF_TOKEN": secret, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf")}
    code = "import sys; from llmspace.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "push", str(folder), "--repo", "alice/tiny-onnx"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "Could not reach the Hub" in done.stderr and "Traceback" not in done.stderr
    assert secret not in done.stdout + done.stderr
