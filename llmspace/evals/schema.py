"""``python -m llmspace.evals.schema [OUT]``: write the eval-case JSON Schema, generated from
``CaseModel``, to ``OUT`` (default: the shipped ``llmspace/data/evals/schema.json``; ``-`` prints it).

A test fails when the shipped file and ``case_json_schema()`` differ; this command mends it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llmspace.evals.case_model import case_json_schema


def schema_text() -> str:
    return json.dumps(case_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path | str | None = None) -> Path:
    """Write the schema to ``path`` (default: the shipped schema.json)."""
    from llmspace.evals.cases import schema_path

    path = Path(path) if path else schema_path()
    path.write_text(schema_text(), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llmspace.evals.schema",
                                description="Write the eval-case JSON Schema generated from CaseModel.")
    p.add_argument("out", nargs="?", help="file to write (default: the shipped schema.json; - prints it)")
    args = p.parse_args(argv)
    if args.out == "-":
        print(schema_text(), end="")
    else:
        print(f"wrote {write_schema(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
