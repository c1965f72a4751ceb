"""``llmspace space build OUT``: a folder ready to push as a Hugging Face Space.

``--kind gradio`` (default): the whole app (Gradio UI at /, API at /v1, browser
page at /web/) -- README.md with Space front matter, app.py (llmspace/data/space/app.py),
requirements.txt (pyproject's dependencies, gradio pinned to the installed
version), the llmspace package, the built web page and the chosen exports.
Everything comes from the installed package (templates are package data under
llmspace/data/space/), so it works from a wheel as from a checkout; only the
page, which npm builds, must be found: web/dist or ``LLMSPACE_WEB_DIST``.
The Space loads its chat and embedding models from the Hub by id.

``--kind static``: only the browser page and the exports, served as static
files by the Hub (no Python); the server comparison is then absent.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

import yaml

from llmspace.config import Settings
from llmspace.export.errors import ExportError
from llmspace.export.web_page import SOURCE_DIST, missing_page, source_checkout, web_dist

PACKAGE = Path(__file__).resolve().parents[1]  # the llmspace package, installed or in a checkout
TEMPLATES = PACKAGE / "data" / "space"  # package data: app.py, README.<kind>.md, gitattributes
WEB_DIST = SOURCE_DIST  # a checkout's web/dist; LLMSPACE_WEB_DIST points at another built page
KINDS = ("gradio", "static")
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def read_front_matter(readme: Path) -> dict:
    """The YAML between the leading ``---`` lines of a README ({} when absent or invalid)."""
    text = Path(readme).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    try:
        data = yaml.safe_load(text[4:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def dependencies() -> list[str]:
    """llmspace's own requirements: from pyproject.toml in a source checkout, else from the
    installed package's metadata (without the extras)."""
    checkout = source_checkout()
    if checkout is not None and (checkout / "pyproject.toml").is_file():
        import tomllib

        return tomllib.loads((checkout / "pyproject.toml").read_text())["project"]["dependencies"]
    try:
        declared = metadata.requires("llmspace") or []
    except metadata.PackageNotFoundError:
        raise ExportError(f"Cannot tell llmspace's dependencies: no pyproject.toml beside {PACKAGE} and no "
                          "installed llmspace metadata. Install it (`pip install .`) and retry.") from None
    return [r for r in declared if "extra" not in r.partition(";")[2]]  # 'trl>=1.0; extra == "train"' is not


def requirements() -> list[str]:
    """The Space's pip requirements: llmspace's dependencies, gradio pinned to this install."""
    deps = dependencies()
    gradio = metadata.version("gradio")
    return [f"gradio=={gradio}" if d.replace(" ", "").startswith("gradio") else d for d in deps]


def hub_models(settings: Settings) -> list[str]:
    from llmspace import models

    out = []
    for name in (settings.chat_model, settings.embedding_model):
        spec = models.lookup(name)
        hub = spec.hub_id if spec else (name if name.count("/") == 1 and not Path(name).exists() else None)
        if hub and hub not in out:
            out.append(hub)
    return out


def front_matter(kind: str, title: str, models: list[str], description: str) -> dict:
    fm = {"title": title, "emoji": "🧭", "colorFrom": "indigo", "colorTo": "yellow"}
    if kind == "gradio":
        fm.update(sdk="gradio", sdk_version=metadata.version("gradio"), app_file="app.py",
                  python_version=PYTHON_VERSION)
    else:
        fm.update(sdk="static", app_file="index.html",
                  # cross-origin isolation: lets onnxruntime-web use several WASM threads
                  custom_headers={"cross-origin-embedder-policy": "require-corp",
                                  "cross-origin-opener-policy": "same-origin",
                                  "cross-origin-resource-policy": "cross-origin"})
    fm.update(suggested_hardware="cpu-basic", models=models, pinned=False, license="apache-2.0",
              short_description=description[:60])
    return fm


def build_space(out: Path | str, kind: str = "gradio", exports: list[str] | None = None,
                settings: Settings | None = None, force: bool = False, title: str = "llmspace") -> Path:
    """Write the Space folder ``out`` (atomically); ``exports`` default to every export present."""
    from llmspace.export.layout import list_exports
    from llmspace.export.onnx_export import prepare_out
    from llmspace.fsutil import swap_in

    if kind not in KINDS:
        raise ExportError(f"Unknown Space kind {kind!r}: use {' or '.join(KINDS)}.", param="kind")
    settings = settings or Settings.load()
    page = web_dist(settings)
    no_page = missing_page(page, settings)
    if no_page:
        raise ExportError(no_page, param="web_dist")
    present = {e["name"]: e for e in list_exports(settings.exports_dir)}
    chosen = list(present) if exports is None else exports
    missing = [n for n in chosen if n not in present]
    if missing:
        raise ExportError(f"No export named {', '.join(missing)} under {settings.exports_dir} "
                          f"(have: {', '.join(present) or 'none'}). Run `llmspace export onnx` first.", param="export")
    if kind == "static" and not any(present[n]["task"] == "text-generation" for n in chosen):
        raise ExportError("A static Space needs an exported chat model: run `llmspace export onnx` first.")
    out = prepare_out(Path(out), force)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        models = hub_models(settings)
        description = "Chat, RAG with citations and evals, plus the model running in your browser."
        _write_readme(tmp, kind, title, models, description)
        shutil.copy2(TEMPLATES / "gitattributes", tmp / ".gitattributes")
        if kind == "gradio":
            _gradio_files(tmp, settings, models, page)
            models_root = tmp / "home" / "exports"
        else:
            shutil.copytree(page, tmp, dirs_exist_ok=True)
            models_root = tmp / "models"
        models_root.mkdir(parents=True, exist_ok=True)
        for name in chosen:
            shutil.copytree(settings.exports_dir / name, models_root / name)
        if kind == "static":  # the page reads models/index.json; here it is a file, not a route
            (models_root / "index.json").write_text(json.dumps({"models": list_exports(models_root)}, indent=2))
        swap_in(tmp, out, "README.md")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_readme(folder: Path, kind: str, title: str, models: list[str], description: str) -> None:
    body = (TEMPLATES / f"README.{kind}.md").read_text(encoding="utf-8")
    for key, value in {"title": title, "description": description, "kind": kind,
                       "date": time.strftime("%Y-%m-%d"), "models": ", ".join(models) or "none"}.items():
        body = body.replace("{" + key + "}", value)
    fm = yaml.safe_dump(front_matter(kind, title, models, description), sort_keys=False, allow_unicode=True)
    (folder / "README.md").write_text(f"---\n{fm}---\n\n{body}", encoding="utf-8")


def _gradio_files(folder: Path, settings: Settings, models: list[str], page: Path) -> None:
    shutil.copy2(TEMPLATES / "app.py", folder / "app.py")
    (folder / "requirements.txt").write_text("\n".join(requirements()) + "\n")
    shutil.copytree(PACKAGE, folder / "llmspace", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (folder / "web").mkdir()  # where the Space's llmspace (a checkout layout) looks for the page
    shutil.copytree(page, folder / "web" / "dist")
    from llmspace import models as registry

    env = {}
    for key, name in (("LLMSPACE_CHAT_MODEL", settings.chat_model),
                      ("LLMSPACE_EMBEDDING_MODEL", settings.embedding_model)):
        spec = registry.lookup(name)
        # the packaged weights are not installed on a Space: load the same model from the Hub
        env[key] = spec.hub_id if spec and spec.hub_id else name
    (folder / "space.json").write_text(json.dumps({"env": env, "models": models,
                                                   "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}, indent=2))
