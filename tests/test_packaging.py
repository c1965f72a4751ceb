"""Packaging: the Python floor we declare, and what an installed wheel can do outside the repository."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

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
