"""Packaging: the Python floor we declare, and what an installed wheel can do outside the repository."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# stdlib modules newer than 3.10, and the Python that first has them
NEWER_STDLIB = {"tomllib": (3, 11)}


def declared_floor() -> tuple[int, int]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec.strip())
    assert m, f"requires-python {spec!r} is not a plain floor"
    return int(m[1]), int(m[2])


def test_requires_python_covers_the_stdlib_modules_we_import():
    floor = declared_floor()
    for path in (ROOT / "llmspace").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for mod, needs in NEWER_STDLIB.items():
            if re.search(rf"^\s*(import|from)\s+{mod}\b", text, re.M):
                assert floor >= needs, f"{path.relative_to(ROOT)} imports {mod} (Python {needs}), floor is {floor}"


def test_docs_state_the_declared_floor():
    want = "%d.%d" % declared_floor()
    for doc in ("README.md", "README.zh.md", "llmspace/data/roadmap/en/01-environment.md",
                "llmspace/data/roadmap/zh/01-environment.md"):
        found = re.findall(r"Python (3\.\d+)", (ROOT / doc).read_text(encoding="utf-8"))
        assert found and set(found) == {want}, (doc, found)
    assert sys.version_info[:2] >= declared_floor()


# ---- a wheel installed outside the repository -------------------------------------------------------
WEB_CHECK = """
import json, llmspace
from fastapi.testclient import TestClient
from llmspace.config import Settings
from llmspace.serve.app import create_app
from llmspace.services import Services
r = TestClient(create_app(Services(Settings.load()), with_ui=False)).get("/web/")
print(json.dumps({"file": llmspace.__file__, "status": r.status_code, "error": r.json()["error"]}))
"""


@pytest.mark.slow
def test_wheel_installed_outside_the_repo_builds_a_space_and_says_what_web_lacks(tmp_path):
    """`pip install` of the wheel into a fresh venv: `llmspace space build` works from package data, and
    `/web/` (no web/dist in a wheel) says what is missing and the command that makes it."""
    import json
    import subprocess
    import sysconfig
    import zipfile

    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("llmspace-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "llmspace/data/space/app.py" in names and "llmspace/data/evals/schema.json" in names
    heavy = [n for n in names if "node_modules" in n or n.startswith("web/")
             or n.endswith((".safetensors", ".onnx", ".onnx_data", ".gguf", ".bin", ".pt", ".faiss"))]
    assert heavy == [], heavy[:5]
    assert sum(i.file_size for i in zipfile.ZipFile(wheel).infolist()) < 20 * 2**20

    # a fresh venv that sees this one's dependencies (after its own site-packages), not its llmspace
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=300)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LLMSPACE_HOME": str(tmp_path / "home"),
           "LLMSPACE_WEB_EXPORT": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def run(*args, **extra):
        return subprocess.run(list(args), cwd=outside, env={**env, **extra}, capture_output=True, text=True,
                              timeout=300)

    web = run(str(py), "-c", WEB_CHECK)
    assert web.returncode == 0, web.stderr[-2000:]
    got = json.loads(web.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(venv.resolve())
    assert got["status"] == 404 and got["error"]["code"] == "web_page_not_built"
    msg = got["error"]["message"]
    assert "LLMSPACE_WEB_DIST is not set" in msg and "installed package" in msg and "npm run build" in msg

    llmspace = str(venv / "bin" / "llmspace")
    refused = run(llmspace, "space", "build", "out")
    assert refused.returncode == 1 and "LLMSPACE_WEB_DIST is not set" in refused.stderr
    assert not (outside / "out").exists()

    page = tmp_path / "page"
    page.mkdir()
    (page / "index.html").write_text('<div id="root"></div>', encoding="utf-8")
    built = run(llmspace, "space", "build", "out", LLMSPACE_WEB_DIST=str(page))
    assert built.returncode == 0, built.stderr[-2000:]
    out = outside / "out"
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "app_file: app.py" in readme
    assert (out / "app.py").is_file() and (out / ".gitattributes").is_file() and (out / "space.json").is_file()
    reqs = (out / "requirements.txt").read_text().split("\n")
    assert any(r.startswith("gradio==") for r in reqs) and any(r.startswith("torch") for r in reqs)
    assert not any(r.startswith("trl") or "extra" in r for r in reqs)  # extras are not the Space's
    assert (out / "llmspace" / "serve" / "web_routes.py").is_file()
    assert (out / "web" / "dist" / "index.html").is_file()
    assert not list(out.rglob("__pycache__"))
