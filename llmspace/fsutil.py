"""Atomic folder replacement, shared by every artefact llmspace writes
(converted models, RAG indexes, ONNX exports, Space folders).

An artefact's path is a symbolic link to a version folder beside it::

    indexes/docs -> .docs.versions/20261201-101500-3f2a9c
    indexes/.docs.versions/20261201-101500-3f2a9c/manifest.json ...

A writer builds in a temporary folder, renames it into the versions folder and
points the link at it with ``os.replace`` of a new link: one atomic rename, so
the path is never missing and always names a whole version, old or new. The
version it replaced is deleted ``GRACE_S`` later, so a reader that looked the
link up just before the flip still finds its files. A reader that must see one
version throughout resolves the link once (``current``), reads only under that
folder, and resolves again if a swap deleted it meanwhile (``RagService`` does).

Leftovers of a killed writer (a version never linked, a half-made link, the
``.old-*`` copy of the older two-rename swap) are cleared by ``recover_dir``,
which runs only under the artefact's file lock (``artefact_lock``), the one its
writer holds, so it can never undo a swap in progress. Readers never recover.

A plain folder written by an older llmspace still loads; the next swap moves it
into the versions folder. Where links cannot be made (Windows without Developer
Mode, FAT drives) ``replace_dir`` falls back to two renames, and ``current``
waits out the instant between them.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

WAIT_S = 2.0  # how long ``current`` waits for a swap in flight to finish
GRACE_S = 0.5  # how long a replaced version outlives its swap
_symlinks_ok: dict[str, bool] = {}


def versions_dir(target: Path) -> Path:
    """Where the versions of ``target`` live: ``.<name>.versions/`` beside it."""
    return target.parent / f".{target.name}.versions"


def artefact_lock(target: Path, timeout: float = -1):
    """The file lock a writer of ``target`` holds while it builds, swaps or recovers."""
    from filelock import FileLock

    return FileLock(str(target.parent / f".{target.name}.lock"), timeout=timeout)


def current(target: Path, wait_s: float = WAIT_S) -> Path | None:
    """The version folder ``target`` names now, resolved once (read every file of
    one load under it), or None when there is none. While a swap that can leave
    the path briefly missing is in flight (the two-rename fallback, or moving an
    older plain folder into the versions folder) it waits up to ``wait_s``."""
    deadline, tries = time.monotonic() + wait_s, 0
    while True:
        in_flight = versions_dir(target).exists() or bool(old_copies(target))
        real = Path(os.path.realpath(target))
        if real.is_dir():
            return real
        tries += 1  # a few quick looks even when none seemed in flight: one may have begun meanwhile
        if time.monotonic() > deadline or (not in_flight and tries > 3):
            return None
        time.sleep(0.005)


def old_copies(target: Path) -> list[Path]:
    """Old copies of ``target`` moved aside by the two-rename swap, oldest first."""
    def age(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:  # removed meanwhile
            return 0.0
    return sorted(target.parent.glob(f".old-{target.name}-*"), key=age)


def replace_dir(tmp: Path, target: Path, grace_s: float = GRACE_S) -> None:
    """Make the finished folder ``tmp`` be ``target`` in one atomic step (see the
    module docstring); the version it replaces is deleted. ``tmp`` may itself be
    an artefact written by ``replace_dir`` (a link): its version folder moves."""
    tmp, target = Path(tmp), Path(target)
    src = Path(os.path.realpath(tmp)) if tmp.is_symlink() else tmp
    if not _can_symlink(target.parent):
        _rename_swap(src, target, grace_s)
        _drop_link(tmp, src)
        return
    store = versions_dir(target)
    store.mkdir(exist_ok=True)
    new = store / _version_id()
    src.rename(new)
    _drop_link(tmp, src)
    retired = _linked_version(target)
    if target.is_dir() and not target.is_symlink():  # a plain folder from an older llmspace
        retired = store / f"legacy-{_version_id()}"
        target.rename(retired)  # readers wait in ``current`` until the link below is in place
    _link(target, new)
    if retired is not None and retired != new:
        _retire(retired, grace_s)


def recover_dir(target: Path, complete_marker: str) -> None:
    """Clear what a killed writer left; call it only under ``artefact_lock(target)``.
    When ``target`` is missing, the newest complete version (or ``.old-*`` copy)
    is put back."""
    target = Path(target)
    for link in target.parent.glob(f".{target.name}.link-*"):
        link.unlink(missing_ok=True)
    for trash in [*target.parent.glob(f".del-{target.name}-*"), target.parent / f".del-{target.name}"]:
        shutil.rmtree(trash, ignore_errors=True)
    store = versions_dir(target)
    versions = sorted((p for p in store.iterdir() if p.is_dir()), key=lambda p: p.name) if store.is_dir() else []
    olds = old_copies(target)
    if not target.exists():  # killed mid-swap, mid-migration or mid-delete
        complete = [p for p in versions if (p / complete_marker).exists()]
        if complete:
            _link(target, complete[-1])
        elif olds and (olds[-1] / complete_marker).exists():
            if target.is_symlink():
                target.unlink()
            olds.pop().rename(target)
        elif target.is_symlink():
            target.unlink()  # a dangling link: nothing to put back
    keep = _linked_version(target)
    for p in versions + olds:
        if p != keep and _age(p) > GRACE_S:  # a younger one may be a writer's grace: the next recovery
            shutil.rmtree(p, ignore_errors=True)
    if store.is_dir() and not any(store.iterdir()):
        store.rmdir()


def remove_dir(target: Path) -> None:
    """Delete ``target`` and its versions; readers see it gone at once. Call it
    under ``artefact_lock(target)``."""
    target = Path(target)
    trash = target.parent / f".del-{target.name}-{uuid.uuid4().hex[:8]}"
    store = versions_dir(target)
    if target.is_symlink():
        if store.exists():
            store.rename(trash)  # atomic: the link now dangles, so readers find nothing
        target.unlink()
    elif target.exists():
        target.rename(trash)
        shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------- helpers
def _version_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 10**9:09d}-{uuid.uuid4().hex[:6]}"


def _link(target: Path, version: Path) -> None:
    """Point ``target`` at ``version`` (inside its versions folder) atomically."""
    link = target.parent / f".{target.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.join(version.parent.name, version.name), link, target_is_directory=True)
    try:
        os.replace(link, target)
    except BaseException:
        link.unlink(missing_ok=True)
        raise


def _linked_version(target: Path) -> Path | None:
    """The version folder the link ``target`` points at, if it is one of ours."""
    if not target.is_symlink():
        return None
    real = Path(os.path.realpath(target))
    store = Path(os.path.realpath(versions_dir(target)))
    return versions_dir(target) / real.name if real.parent == store else None


def _drop_link(tmp: Path, moved: Path) -> None:
    """After moving the version a link ``tmp`` named: remove the link and its empty versions folder."""
    if tmp != moved:
        tmp.unlink(missing_ok=True)
        try:
            versions_dir(tmp).rmdir()
        except OSError:
            pass


def _can_symlink(folder: Path) -> bool:
    key = str(Path(folder).resolve())
    if key not in _symlinks_ok:
        probe = Path(folder) / f".symlink-probe-{uuid.uuid4().hex[:8]}"
        try:
            os.symlink(".", probe, target_is_directory=True)
            probe.unlink()
            _symlinks_ok[key] = True
        except (OSError, NotImplementedError):
            _symlinks_ok[key] = False
    return _symlinks_ok[key]


def _retire(version: Path, grace_s: float) -> None:
    os.utime(version)  # when it was replaced, for ``recover_dir``
    time.sleep(grace_s)
    shutil.rmtree(version, ignore_errors=True)


def _age(p: Path) -> float:
    try:
        return time.time() - p.stat().st_mtime
    except OSError:
        return float("inf")


def _rename_swap(tmp: Path, target: Path, grace_s: float) -> None:
    """Two renames (old -> .old-*, tmp -> target): the path is missing between them."""
    old = target.parent / f".old-{target.name}-{_version_id()}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    if old.exists():
        _retire(old, grace_s)


def swap_in(tmp: Path, target: Path, complete_marker: str) -> None:
    """``replace_dir`` under ``artefact_lock(target)``, after clearing what a killed
    writer left: for writers that build without holding the lock (exports, Spaces)."""
    with artefact_lock(target):
        recover_dir(target, complete_marker)
        replace_dir(tmp, target)
