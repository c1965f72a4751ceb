"""The README's examples run, so the docs cannot drift."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_gives_exactly_the_two_commands():
    first = blocks("bash")[0]
    cmds = [line.split("#")[0].strip() for line in first.splitlines() if line.strip()]
    assert cmds == ["make run", "make test"]
    assert (ROOT / "docs" / "screenshot.png").exists()


@pytest.mark.slow
def test_python_api_example_runs_against_the_server(live_server):
    code = blocks("python")[0].replace("http://127.0.0.1:7860", live_server)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "The capital of France is Paris."
    assert lines[-1].endswith("384")


def test_cli_commands_in_readme_exist():
    from llmspace.cli import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    for block in blocks("bash"):
        for line in block.splitlines():
            m = re.match(r"\s*\.venv/bin/llmspace (\S+)", line)
            if m:
                assert m.group(1) in commands, line
