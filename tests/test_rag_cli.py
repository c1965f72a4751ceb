"""`llmspace index ...` and `llmspace search`, run in-process like a user would."""

from __future__ import annotations

import json

import pytest
from test_rag_docs import BEES, TEA

from llmspace.cli import main

pytestmark = pytest.mark.slow


def test_index_lifecycle_and_search(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bees.md").write_text(BEES, encoding="utf-8")
    (docs / "tea.md").write_text(TEA, encoding="utf-8")
    (docs / "logo.png").write_bytes(b"\x89PNG")
    assert main(["index", "ls"]) == 0
    assert "No indexes yet" in capsys.readouterr().out

    assert main(["index", "build", str(docs), "--name", "notes"]) == 0
    out, err = capsys.readouterr()
    assert "index 'notes': 2 documents" in out and "skipped logo.png: unsupported file type (.png)" in err

    assert main(["search", "绿茶用多少度的水？", "--index", "notes", "--top-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["source"] == "tea.md" and hits[0]["score"] > 0 and "start" in hits[0]

    assert main(["index", "info", "notes", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["embedding"]["model"] == "all-minilm-l6-v2" and set(info["files"]) == {"bees.md", "tea.md"}
    assert main(["index", "rm", "notes"]) == 0
    capsys.readouterr()
    assert main(["index", "ls", "--json"]) == 0 and json.loads(capsys.readouterr().out) == []


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["index", "build", str(empty), "--name", "x"]) == 1
    assert "error: No files found" in capsys.readouterr().err
    assert main(["index", "build", str(empty), "--name", "a/b"]) == 1
    assert "no slashes" in capsys.readouterr().err
    assert main(["search", "bees", "--index", "nope"]) == 1
    assert "No index named 'nope'" in capsys.readouterr().err
    assert main(["index", "rm", "nope"]) == 1
    assert "No index named 'nope'" in capsys.readouterr().err


def test_ask_with_an_index_labels_who_made_each_citation(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bees.md").write_text(BEES, encoding="utf-8")
    assert main(["index", "build", str(docs), "--name", "notes"]) == 0
    capsys.readouterr()
    assert main(["ask", "--index", "notes", "--json", "How much honey does a beekeeper leave for winter?"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["mode"] == "extractive" and "20 kilograms" in body["answer"]
    assert [c["origin"] for c in body["citations"]] == ["extractive"] * len(body["citations"])
    assert main(["ask", "--index", "notes", "--mode", "generate", "--max-tokens", "24", "--json",
                 "How much honey does a beekeeper leave for winter?"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["mode"] in ("generate", "extractive") and body["support"] is not None  # generated, then checked
    assert all(c["origin"] in ("model", "attached", "extractive") for c in body["citations"])
    assert main(["ask", "--index", "notes", "--json", "In what year did beekeeping start in the town?"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "no_answer"
