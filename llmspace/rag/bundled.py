"""The bundled roadmap corpus (``llmspace/data/roadmap/{en,zh}``) as index "roadmap".

``ensure_bundled_index`` runs on app start: it compares the corpus files'
hashes, the embedding model and the chunker settings with the index's
manifest, returns at once when they match (no model is loaded), and otherwise
(re)builds, re-embedding only the chapters that changed.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from llmspace.rag.build import Progress, files_fingerprint
from llmspace.rag.chunking import ChunkerSettings
from llmspace.rag.index import FORMAT_VERSION, MANIFEST, canonical_model, read_manifest

BUNDLED_INDEX = "roadmap"
CORPUS_DIR = Path(__file__).resolve().parent.parent / "data" / "roadmap"


def bundled_status(settings, corpus: Path = CORPUS_DIR, name: str = BUNDLED_INDEX) -> str:
    """ "current", "missing", "outdated" (corpus, model or chunker changed) or "no_corpus"."""
    if not corpus.is_dir() or not any(corpus.rglob("*.md")):
        return "no_corpus"
    path = settings.indexes_dir / name
    if not (path / MANIFEST).exists():
        return "missing"
    try:
        m = read_manifest(path)
    except Exception:  # noqa: BLE001 - unreadable means rebuild
        return "outdated"
    same = (m.get("format_version") == FORMAT_VERSION
            and canonical_model(m.get("embedding", {}).get("model", "")) == canonical_model(settings.embedding_model)
            and m.get("chunker") == ChunkerSettings().to_dict()
            and m.get("inputs") == files_fingerprint([corpus]))
    return "current" if same else "outdated"


def ensure_bundled_index(services, progress: Progress | Callable[[str], None] | None = None,
                         corpus: Path = CORPUS_DIR, name: str = BUNDLED_INDEX) -> dict:
    """Build the bundled index if it is missing or outdated. ``progress`` is
    ``(fraction, message)`` or a plain ``(message)`` printer (the server's log).
    Returns ``{"name", "status": "current" | "built" | "no_corpus", "report": dict | None}``."""
    progress = _two_args(progress)
    status = bundled_status(services.settings, corpus, name)
    if status in ("current", "no_corpus"):
        if progress:
            progress(1.0, f"index {name!r} is {'up to date' if status == 'current' else 'not bundled'}")
        return {"name": name, "status": status, "report": None}
    report = services.rag.build([corpus], name, progress=progress)
    return {"name": name, "status": "built", "report": report.to_dict()}


def _two_args(progress) -> Progress | None:
    if progress is None:
        return None
    try:
        params = [p for p in inspect.signature(progress).parameters.values()
                  if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return progress
    if len(params) == 1:
        return lambda fraction, message: progress(f"llmspace: roadmap index {fraction * 100:.0f}%: {message}")
    return progress
