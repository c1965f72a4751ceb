"""Atomic folder replacement, shared by every artefact llmspace writes
(converted models, RAG indexes, ONNX exports, Space folders).

An artefact is built in a temporary folder beside its target and swapped in
with two renames. A process killed between the renames leaves the old copy as
``.old-<name>-<id>``, which ``recover_dir`` puts back.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path


def old_copies(target: Path) -> list[Path]:
    """Old copies of ``target`` moved aside by ``replace_dir``, oldest first."""
    return sorted(target.parent.glob(f".old-{target.name}-*"), key=lambda p: p.stat().st_mtime)


def replace_dir(tmp: Path, target: Path) -> None:
    """Make ``tmp`` be ``target``: old -> .old-*, tmp -> target, drop .old-*."""
    old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: Path, complete_marker: str) -> None:
    """After a kill between the two renames of ``replace_dir``: put the newest
    complete old copy back (or, when ``target`` exists, drop the old copies)."""
    olds = old_copies(target)
    if target.exists():
        for old in olds:
            shutil.rmtree(old, ignore_errors=True)
        return
    if olds and (olds[-1] / complete_marker).exists():
        olds[-1].rename(target)
