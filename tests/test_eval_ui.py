"""Eval tab: builds, its functions show stored runs, compare, A/B, and thumbs feedback."""

from __future__ import annotations

import json

import gradio as gr

from llmspace.evals.cases import load_eval_set
from llmspace.evals.feedback import list_feedback
from llmspace.evals.results import SystemOutput
from llmspace.evals.runner import run_eval
from llmspace.evals.store import RunStore
from llmspace.services import Services
from llmspace.ui import eval_tab


def _two_runs(settings, tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"id": "hi", "question": "hi", "tags": ["chat"],
                             "assertions": [{"type": "contains", "value": "hello"}]}) + "\n", encoding="utf-8")
    s, store = load_eval_set(p), RunStore(settings.db_path)
    a = run_eval(s, lambda c: SystemOutput("hello!", completion_tokens=2, total_s=0.1), store)
    b = run_eval(s, lambda c: SystemOutput("bye", completion_tokens=1, total_s=0.1), store)
    return a, b


def test_tab_builds_and_shows_runs(settings, tmp_path):
    services = Services(settings)
    a, b = _two_runs(settings, tmp_path)
    with gr.Blocks() as demo:
        eval_tab.build(services, lambda k: k)
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"eval_run", "eval_diff", "ab_report"} <= names
    assert [v for _, v in eval_tab.run_choices(services)] == [b.id, a.id]
    summary, rows, charts, report = eval_tab.show_run(services, b.id)
    assert "pass rate: 0.0%" in summary and rows[0][:2] == ["hi", "fail"] and "<svg" in charts
    assert report.endswith("report.html")
    diff = eval_tab.compare_md(services, a.id, b.id)
    assert "hi: pass -> fail" in diff
    assert "A/B is **off**" in eval_tab.ab_md(services)


def test_thumbs_on_a_chatbot_are_stored(settings):
    services = Services(settings)
    history = [{"role": "user", "content": "What is BM25?"},
               {"role": "assistant", "content": [{"type": "text", "text": "A ranking function [1]."}]}]
    data = gr.LikeData(None, {"index": 1, "value": history[1]["content"], "liked": False})
    row = eval_tab.feedback_from_like(services, history, data, kind="rag", index="roadmap")
    assert row["rating"] == "down" and row["question"] == "What is BM25?"
    assert list_feedback(settings.db_path)[0]["answer"] == "A ranking function [1]."
    with gr.Blocks():
        bot = gr.Chatbot()
        eval_tab.wire_feedback(bot, services)


def test_feedback_row_under_a_markdown_answer(settings):
    services = Services(settings)
    with gr.Blocks() as demo:
        q, a, idx = gr.Textbox(), gr.Markdown(), gr.Textbox()
        eval_tab.feedback_row(services, q, a, kind="rag", index=idx)
    deps = {d.get("api_name"): d for d in demo.config["dependencies"]}
    assert {"feedback_rag_up", "feedback_rag_down"} <= set(deps)
    fn = demo.fns[deps["feedback_rag_up"]["id"]].fn
    assert fn("What is RRF?", "Rank fusion [1].", "nice", "roadmap") == ""
    [row] = list_feedback(settings.db_path)
    assert (row["rating"], row["comment"], row["index_name"], row["kind"]) == ("up", "nice", "roadmap", "rag")


def test_an_html_answer_is_stored_as_text():
    assert eval_tab._text('<div class="a"><p>Rank fusion <sup>[1]</sup> &amp; more</p><p>next</p></div>') == \
        "Rank fusion [1] & more\nnext"
    assert eval_tab._text("2 < 3 and 4 > 1") == "2 < 3 and 4 > 1"
