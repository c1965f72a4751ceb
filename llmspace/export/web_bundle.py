"""What the browser page (``/web/``) needs, made on the server's first start.

``prepare_web_bundle(settings)`` exports, when missing or outdated, into
``LLMSPACE_HOME/exports`` (what ``/web/models/`` serves):
- the chat model to ONNX in the dtypes the page prefers (``WEB_DTYPES``);
- the embedding model (feature-extraction), for retrieval in the page;
- the bundled roadmap index, as ``index.json`` beside the embedding export.
Each export is built in a staging folder and swapped in with ``fsutil.swap_in``.

Its state lives in ``exports/.web-export/`` (a hidden folder, so never listed
as an export): ``meta.json`` says what was made (model ids, dtypes, index
fingerprint, llmspace version; a change redoes that part), ``status.json`` the
progress that the page and ``/health`` show, ``export.log`` the exporters' own
output, and ``lock`` keeps two processes sharing a home from exporting at once.
Exports this job did not make (``llmspace export onnx`` by hand, a Space's
bundle) are reused when complete and never replaced without ``force``.

``start_background`` runs it at server start in a subprocess
(``python -m llmspace.export.web_bundle``, settings on stdin, lower priority),
so the export's CPU, memory and onnxruntime logging stay out of the server,
which relays the progress lines to its log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from llmspace.config import Settings

# The page's first choices (web/src/App.jsx, PREFERRED): q8 on WASM, q4 on WebGPU.
WEB_DTYPES = ("q8", "q4")
STATE_DIR = ".web-export"
PREFIX = "llmspace: browser models"

Say = Callable[[str], None]


def state_dir(settings: Settings) -> Path:
    return settings.exports_dir / STATE_DIR


def export_name(model: str) -> str:
    """The export folder name of a model reference (as ``llmspace export`` names it)."""
    from llmspace import models

    path = Path(model).expanduser()
    if path.exists():
        return path.stem if path.is_file() else path.name
    spec = models.lookup(model)
    return spec.name if spec else model.rstrip("/").split("/")[-1]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _index_fingerprint(settings: Settings) -> str | None:
    """A hash of the bundled index's manifest (it changes whenever the index is rebuilt)."""
    from llmspace.rag.bundled import BUNDLED_INDEX
    from llmspace.rag.index import MANIFEST

    manifest = settings.indexes_dir / BUNDLED_INDEX / MANIFEST
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] if manifest.exists() else None


def wanted(settings: Settings) -> dict:
    """What the page needs under these settings: ``meta.json`` holds the same shape once made."""
    from llmspace import __version__
    from llmspace.rag.bundled import BUNDLED_INDEX

    emb = export_name(settings.embedding_model)
    fingerprint = _index_fingerprint(settings)
    return {
        "chat": {"model": settings.chat_model, "name": export_name(settings.chat_model),
                 "dtypes": list(WEB_DTYPES), "llmspace": __version__},
        "embedding": {"model": settings.embedding_model, "name": emb, "llmspace": __version__},
        "index": {"name": BUNDLED_INDEX, "fingerprint": fingerprint, "into": emb} if fingerprint else None,
    }


def _complete(part: str, folder: Path) -> bool:
    from llmspace.export.layout import available_dtypes, check_layout, read_meta

    if not (folder / "config.json").exists():
        return False
    if part == "chat":
        return set(WEB_DTYPES) <= set(available_dtypes(folder)) and not check_layout(folder, list(WEB_DTYPES))
    if part == "embedding":
        return read_meta(folder).get("task") == "feature-extraction" and "fp32" in available_dtypes(folder)
    return (folder / "index.json").exists()


def plan(settings: Settings, force: bool = False) -> list[tuple[str, bool, str]]:
    """``(part, make, why)`` for chat, embedding and index; reads files only (no model loads)."""
    want, made = wanted(settings), _read_json(state_dir(settings) / "meta.json")
    exports = settings.exports_dir
    out: list[tuple[str, bool, str]] = []
    for part in ("chat", "embedding"):
        w, m = want[part], made.get(part) or {}
        folder = exports / w["name"]
        ours = m.get("name") == w["name"]
        if force or not folder.exists():
            out.append((part, True, "forced" if force and folder.exists() else "missing"))
        elif ours and m == w and _complete(part, folder):
            out.append((part, False, "up to date"))
        elif ours:
            out.append((part, True, "outdated" if m != w else "incomplete"))
        elif _complete(part, folder):
            out.append((part, False, "made elsewhere, reused"))
        else:
            out.append((part, False, f"made by hand without what the page needs ({folder}); left alone: "
                                     "`llmspace export web --force` replaces it"))
    w, m = want["index"], made.get("index")
    embedding_made = out[1][1]
    emb_folder = exports / want["embedding"]["name"]
    if w is None:
        out.append(("index", False, "no bundled index to export (it is built at server start)"))
    elif embedding_made or force or m != w or not (emb_folder / "index.json").exists():
        foreign_kept = not embedding_made and (made.get("embedding") or {}).get("name") != w["into"]
        if foreign_kept and (emb_folder / "index.json").exists() and not force:
            out.append(("index", False, "made elsewhere, reused"))
        elif not emb_folder.exists() and not embedding_made:
            out.append(("index", False, "no embedding export to put it in"))
        else:
            out.append(("index", True, "missing" if m is None else "outdated"))
    else:
        out.append(("index", False, "up to date"))
    return out


# ------------------------------------------------------------------ status
def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def web_export_status(settings: Settings) -> dict:
    """``{"state": ...}`` with ``state`` one of ``off``, ``not_started``, ``running`` (with
    ``step``, ``steps``, ``message``), ``done``, ``failed`` (with ``error``), ``interrupted``."""
    status = _read_json(state_dir(settings) / "status.json")
    if not status:
        status = {"state": "not_started"}
    elif (status.get("state") == "running" and status.get("host") == socket.gethostname()
          and not _pid_alive(int(status.get("pid") or 0))):
        status = {**status, "state": "interrupted"}
    if not settings.web_export and status["state"] != "running":
        status = {**status, "state": "off"}
    return status


class _Status:
    def __init__(self, settings: Settings, pid: int | None = None):
        self.path = state_dir(settings) / "status.json"
        self.data = {"state": "running", "step": 0, "steps": 0, "part": None, "message": "starting",
                     "pid": pid or os.getpid(), "host": socket.gethostname(), "started_at": _now(), "error": None,
                     "log": str(state_dir(settings) / "export.log")}

    def update(self, **fields) -> None:
        self.data.update(fields, updated_at=_now())
        _write_json(self.path, self.data)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------ the job
def prepare_web_bundle(settings: Settings, force: bool = False, progress: Say | None = None) -> dict:
    """Make what ``plan`` says is missing or outdated; returns the final status.
    Another process holding the lock: returns ``{"state": "busy"}`` at once."""
    from filelock import FileLock, Timeout

    say = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    folder = state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / "lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"{PREFIX}: another process is preparing them; leaving it to that one.")
        return {"state": "busy"}
    try:
        return _prepare_locked(settings, force, say)
    finally:
        lock.release()


def _prepare_locked(settings: Settings, force: bool, say: Say) -> dict:
    folder, want = state_dir(settings), wanted(settings)
    for old in folder.glob("staging-*"):  # what a killed run left
        shutil.rmtree(old, ignore_errors=True)
    steps = plan(settings, force)
    todo = [part for part, make, _ in steps if make]
    status = _Status(settings)
    if not todo:
        say(f"{PREFIX}: " + "; ".join(f"{part} {why}" for part, _, why in steps) + ".")
        status.update(state="done", message="up to date")
        return status.data
    for part, make, why in steps:
        if not make:
            say(f"{PREFIX}: {part}: {why}.")
    staging = folder / f"staging-{os.getpid()}"
    staging.mkdir()
    made = _read_json(folder / "meta.json")
    why = {part: reason for part, _, reason in steps}
    runs = [p for p in todo if not (p == "index" and "embedding" in todo)]  # the embedding step writes it
    t0 = time.perf_counter()
    try:
        for i, part in enumerate(runs, 1):
            label = _LABELS[part](want)
            status.update(step=i, steps=len(runs), part=part, message=label)
            say(f"{PREFIX} {i}/{len(runs)}: {label} ({why[part]}) ...")

            def step_say(msg: str, i=i, label=label) -> None:
                msg = msg.removeprefix("llmspace: ")
                status.update(message=f"{label}: {msg}")
                say(f"{PREFIX} {i}/{len(runs)}: {msg}")

            t = time.perf_counter()
            _MAKERS[part](settings, want, staging, todo, step_say)
            made[part] = want[part]
            if part == "embedding" and "index" in todo:
                made["index"] = want["index"]
            _write_json(folder / "meta.json", {**made, "updated_at": _now()})
            say(f"{PREFIX} {i}/{len(runs)}: {part} done in {time.perf_counter() - t:.1f} s.")
    except BaseException as exc:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        status.update(state="failed", error=message, message=message)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    status.update(state="done", message=f"made {', '.join(todo)} in {time.perf_counter() - t0:.0f} s")
    say(f"{PREFIX}: ready in {time.perf_counter() - t0:.1f} s (open /web/).")
    return status.data


def _make_chat(settings: Settings, want: dict, staging: Path, todo: list[str], say: Say) -> None:
    from llmspace.export.layout import META_FILE
    from llmspace.export.onnx_export import export_onnx
    from llmspace.export.parity import format_parity
    from llmspace.fsutil import swap_in

    name = want["chat"]["name"]
    result = export_onnx(settings.chat_model, staging / name, list(WEB_DTYPES), force=True, settings=settings,
                         progress=say)
    if not result.passed:  # still usable; the card and llmspace_export.json carry the figures
        say("parity with PyTorch is below the bar for some dtype:\n" + format_parity(result.parity))
    swap_in(staging / name, settings.exports_dir / name, META_FILE)


def _make_embedding(settings: Settings, want: dict, staging: Path, todo: list[str], say: Say) -> None:
    from llmspace.export.embedding import export_embedding
    from llmspace.export.layout import META_FILE
    from llmspace.fsutil import swap_in

    name = want["embedding"]["name"]
    export_embedding(settings.embedding_model, staging / name, force=True, settings=settings, progress=say)
    if "index" in todo:  # written before the swap: the page never sees the export without its index
        _make_index(settings, want, staging, todo, say, folder=staging / name)
    swap_in(staging / name, settings.exports_dir / name, META_FILE)


def _make_index(settings: Settings, want: dict, staging: Path, todo: list[str], say: Say,
                folder: Path | None = None) -> None:
    from llmspace.export.embedding import export_rag_index

    folder = folder or settings.exports_dir / want["index"]["into"]
    path = export_rag_index(want["index"]["name"], folder, settings=settings)
    say(f"wrote the {want['index']['name']!r} index for the page ({path.stat().st_size / 2**20:.1f} MiB)")


_MAKERS = {"chat": _make_chat, "embedding": _make_embedding, "index": _make_index}
_LABELS = {
    "chat": lambda w: f"chat model {w['chat']['name']} -> ONNX {', '.join(WEB_DTYPES)}",
    "embedding": lambda w: f"embedding model {w['embedding']['name']} -> ONNX"
                           + (" + the roadmap index" if w["index"] else ""),
    "index": lambda w: f"the {w['index']['name']!r} index for retrieval in the page",
}


# ------------------------------------------------------------------ in the background
def start_background(settings: Settings, say: Say) -> subprocess.Popen | None:
    """At server start: when ``plan`` finds work, run ``prepare_web_bundle`` in a
    lower-priority subprocess and relay its progress lines to ``say``; returns at once."""
    if not settings.web_export:
        say(f"{PREFIX}: not prepared at start (LLMSPACE_WEB_EXPORT=0); `llmspace export web` makes them.")
        return None
    try:
        return _start(settings, say)
    except Exception as exc:  # the page's models are a bonus: never stop the server for them
        say(f"{PREFIX}: could not start preparing them ({type(exc).__name__}: {exc}); "
            "`llmspace export web` makes them.")
        return None


def _start(settings: Settings, say: Say) -> subprocess.Popen | None:
    steps = plan(settings)
    if not any(make for _, make, _ in steps):
        say(f"{PREFIX}: " + "; ".join(f"{part} {why}" for part, _, why in steps) + ".")
        return None
    folder = state_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "export.log", "ab") as log:  # the exporters' own output (warnings, onnxruntime)
        proc = subprocess.Popen([sys.executable, "-m", "llmspace.export.web_bundle"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True, encoding="utf-8",
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdin.write(settings.model_dump_json())
    proc.stdin.close()
    if web_export_status(settings)["state"] != "running":  # the page says "preparing" from the first moment
        _Status(settings, pid=proc.pid).update()
    say(f"{PREFIX}: preparing them in the background (pid {proc.pid}; details in {folder / 'export.log'}).")

    def relay() -> None:
        for line in proc.stdout:
            say(line.rstrip())
        if proc.wait() not in (0, -15):
            say(f"{PREFIX}: the export process exited with {proc.returncode}; see {folder / 'export.log'}.")

    threading.Thread(target=relay, name="web-export-log", daemon=True).start()
    import atexit

    atexit.register(_stop, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _exit_with_parent() -> None:
    """The export is the server's helper: when the server goes, so does it."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(2)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def main() -> int:
    if hasattr(os, "nice"):
        os.nice(10)  # the server's requests come first
    settings = Settings.model_validate_json(sys.stdin.read())
    _exit_with_parent()

    def say(msg: str) -> None:
        print(msg, flush=True)

    try:
        prepare_web_bundle(settings, progress=say)
    except Exception as exc:  # reported in the log and status.json; the server keeps running
        import traceback

        traceback.print_exc()
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        say(f"{PREFIX}: failed: {message} (details in {state_dir(settings) / 'export.log'}; "
            "retry with `llmspace export web`).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
