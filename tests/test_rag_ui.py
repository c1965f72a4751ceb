"""RAG tab: builds with stable api names; its functions upload, ask (clickable
citations with the passage, source and score), inspect and search."""

from __future__ import annotations

import gradio as gr
import pytest
from test_rag_docs import BEES, TEA

from llmspace.config import Settings
from llmspace.services import Services
from llmspace.ui import rag_tab

pytestmark = pytest.mark.slow


@pytest.fixture
def services(llmspace_home, session_services):
    s = Services(Settings.load(env={}, home=llmspace_home))
    s.__dict__["embedder"] = session_services.embedder
    s.__dict__["engine"] = session_services.engine
    return s


def test_tab_upload_ask_inspect_search(services, tmp_path):
    with gr.Blocks() as demo:
        rag_tab.build(services, lambda k: k)
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"rag_answer", "rag_build", "rag_search", "rag_index_info"} <= names

    (tmp_path / "bees.md").write_text(BEES, encoding="utf-8")
    (tmp_path / "tea.md").write_text(TEA, encoding="utf-8")
    (tmp_path / "notes.exe").write_bytes(b"MZ")
    report, dropdown = rag_tab.build_from_upload(
        services, [str(tmp_path / n) for n in ("bees.md", "tea.md", "notes.exe")], "mine")
    assert "2 documents" in report and "notes.exe" in report and dropdown.value == "mine"

    *_, (answer, cites, stats) = list(rag_tab.ask(services, "mine", "冲泡绿茶的水温多少合适？", "auto", 3))
    assert '<a href="#rag-cite-1">1</a>' in answer and "extractive" in stats
    assert 'id="rag-cite-1"' in cites and "tea.md" in cites and "score" in cites and "<mark>" in cites

    info, docs = rag_tab.inspect(services, "mine")
    assert "2 documents" in info and "notes.exe" in info and {r[0] for r in docs} == {"bees.md", "tea.md"}
    rows = rag_tab.search_rows(services, "mine", "honey in winter", "bm25", 2)
    assert rows[0][2] == "bees.md" and len(rows[0]) == len(rag_tab.HIT_COLUMNS)


def test_tab_errors_are_shown_to_the_user(services, tmp_path):
    with pytest.raises(gr.Error, match="Pick an index"):
        list(rag_tab.ask(services, None, "q", "auto", 3))
    with pytest.raises(gr.Error, match="No index named"):
        list(rag_tab.ask(services, "missing", "q", "auto", 3))
    (tmp_path / "a.md").write_text("# A\n\ntext")
    with pytest.raises(gr.Error, match="not allowed"):
        rag_tab.build_from_upload(services, [str(tmp_path / "a.md")], "../evil")


def test_invalid_citations_are_not_linked():
    html = rag_tab.answer_html("Bees [1] and [7?] <b>x</b>", {1})
    assert '<a href="#rag-cite-1">1</a>' in html and "[7?]" in html and "&lt;b&gt;" in html
