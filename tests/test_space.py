"""``llmspace space build``: a folder ready to push as a Hugging Face Space."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from export_helpers import tiny_export

from llmspace.export.errors import ExportError
from llmspace.export.space import WEB_DIST, build_space, read_front_matter

needs_dist = pytest.mark.skipif(not (WEB_DIST / "index.html").exists(),
                                reason="the browser app is not built (web/dist): cd web && npm ci && npm run build")


@pytest.fixture
def with_export(settings, tmp_path_factory, shared_models_dir):
    shutil.copytree(tiny_export(tmp_path_factory.getbasetemp(), shared_models_dir), settings.exports_dir / "tiny")
    return settings


@needs_dist
def test_gradio_space_front_matter_and_files(with_export, tmp_path):
    out = build_space(tmp_path / "space", kind="gradio", settings=with_export)
    fm = read_front_matter(out / "README.md")
    assert fm["sdk"] == "gradio" and fm["sdk_version"] == metadata.version("gradio")
    assert (out / fm["app_file"]).is_file() and fm["app_file"] == "app.py"
    assert fm["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert fm["suggested_hardware"] == "cpu-basic" and fm["title"] and fm["emoji"]
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in fm["models"]
    assert (out / "web" / "dist" / "index.html").exists() and (out / "llmspace" / "serve" / "web_routes.py").exists()
    assert (out / "home" / "exports" / "tiny" / "onnx" / "model_quantized.onnx").exists()
    env = json.loads((out / "space.json").read_text())["env"]
    assert env["LLMSPACE_CHAT_MODEL"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "*.onnx filter=lfs" in (out / ".gitattributes").read_text()
    assert not list(out.rglob("__pycache__"))
    # the Space's app.py imports the bundled package, not this checkout's
    code = "import llmspace.serve.server, llmspace.serve.web_routes as w; print(w.__file__)"
    found = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(out)})
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).resolve().is_relative_to(out.resolve())


@needs_dist
def test_space_requirements_resolve(with_export, tmp_path):
    out = build_space(tmp_path / "space", settings=with_export)
    reqs = (out / "requirements.txt").read_text().split()
    assert f"gradio=={metadata.version('gradio')}" in reqs and any(r.startswith("optimum-onnx") for r in reqs)
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "-r", str(out / "requirements.txt")]
    offline = subprocess.run(cmd + ["--no-index"], capture_output=True, text=True, timeout=300)
    if offline.returncode != 0:  # something is not installed here: let pip resolve it from the index
        online = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if online.returncode != 0 and ("connection" in online.stderr.lower() or "network" in online.stderr.lower()):
            pytest.skip(f"no package index reachable to resolve {offline.stderr.strip()[:200]}")
        assert online.returncode == 0, online.stderr[-2000:]


@needs_dist
def test_static_space_serves_the_page_and_models(with_export, tmp_path):
    out = build_space(tmp_path / "static", kind="static", settings=with_export)
    fm = read_front_matter(out / "README.md")
    assert fm["sdk"] == "static" and (out / fm["app_file"]).is_file() and "sdk_version" not in fm
    assert fm["custom_headers"]["cross-origin-opener-policy"] == "same-origin"
    listing = json.loads((out / "models" / "index.json").read_text())["models"]
    assert [m["name"] for m in listing] == ["tiny"] and listing[0]["dtypes"] == ["fp32", "q8", "q4"]
    assert (out / "ort" / "ort-wasm-simd-threaded.asyncify.wasm").exists()
    assert not (out / "app.py").exists() and not (out / "llmspace").exists()


@needs_dist
def test_space_build_bad_input(with_export, tmp_path, capsys):
    from llmspace.cli import main

    with pytest.raises(ExportError, match="Unknown Space kind"):
        build_space(tmp_path / "a", kind="docker", settings=with_export)
    with pytest.raises(ExportError, match="No export named nope"):
        build_space(tmp_path / "b", exports=["nope"], settings=with_export)
    (tmp_path / "c").mkdir()
    assert main(["space", "build", str(tmp_path / "c")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["space", "build", str(tmp_path / "d"), "--export", "tiny"]) == 0
    assert "space push" in capsys.readouterr().out


def test_static_space_needs_a_chat_export(settings, tmp_path):
    if not (WEB_DIST / "index.html").exists():
        with pytest.raises(ExportError, match="npm run build"):
            build_space(tmp_path / "s", kind="static", settings=settings)
    else:
        with pytest.raises(ExportError, match="llmspace export onnx"):
            build_space(tmp_path / "s", kind="static", settings=settings)
