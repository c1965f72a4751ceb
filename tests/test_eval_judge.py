"""The optional LLM-as-judge: off by default, labelled, never decides pass/fail."""

from __future__ import annotations

import json

from llmspace.engine.base import Delta, Usage
from llmspace.evals.cases import load_eval_set
from llmspace.evals.judge import Judge, parse_score
from llmspace.evals.report import render_html
from llmspace.evals.results import SystemOutput
from llmspace.evals.runner import run_eval
from llmspace.evals.store import RunStore
from llmspace.services import Services


class ScriptedEngine:
    model_id, backend, context_window = "judge-model", "fake", 2048

    def __init__(self, reply):
        self.reply, self.prompts = reply, []

    def count_prompt_tokens(self, messages):
        return 1

    def stream(self, messages, params):
        self.prompts.append(messages[0].content)
        yield Delta(self.reply)
        yield Delta("", finish_reason="stop", usage=Usage(1, 1))


def test_parse_score():
    assert parse_score("4 - mostly supported") == 0.75
    assert parse_score("Score: 1") == 0.0 and parse_score("5") == 1.0
    assert parse_score("no idea") is None


def test_judge_scores_are_recorded_and_labelled_but_do_not_decide(settings, tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"id": "c", "question": "What is 2+2?", "reference": "4",
                             "assertions": [{"type": "contains", "value": "5"}]}) + "\n", encoding="utf-8")
    judge = Judge(Services(settings), model="judge-model")
    judge._engine = ScriptedEngine("5 fully supported")
    run = run_eval(load_eval_set(p), lambda c: SystemOutput("4", source_texts=["2+2 is 4"]),
                   RunStore(settings.db_path), judge=judge)
    r = run.results[0]
    assert r.judge["faithfulness"] == 1.0 and r.judge["model"] == "judge-model"
    assert not r.passed  # the assertion decides, not the judge
    assert run.metrics["judge_faithfulness_mean"] == 1.0
    assert run.config["judge"]["model"] == "judge-model"
    assert "[1] 2+2 is 4" in judge._engine.prompts[0]
    assert "LLM-as-judge faithfulness (model-graded, not ground truth)" in render_html(run)


def test_judge_is_off_by_default(settings, tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps({"id": "c", "question": "q", "assertions": []}) + "\n", encoding="utf-8")
    run = run_eval(load_eval_set(p), lambda c: SystemOutput("a"), RunStore(settings.db_path))
    assert run.results[0].judge is None and run.metrics["judge_faithfulness_mean"] is None
    assert run.config["judge"] is None and "LLM-as-judge" not in render_html(run)


def test_a_failing_judge_does_not_fail_the_case(settings):
    class Broken(ScriptedEngine):
        def stream(self, messages, params):
            raise RuntimeError("judge down")
            yield  # pragma: no cover

    judge = Judge(Services(settings), model="x")
    judge._engine = Broken("")
    from llmspace.evals.cases import EvalCase

    out = judge(EvalCase(id="c", assertions=[], question="q"), SystemOutput("a"))
    assert out["faithfulness"] is None and "judge down" in out["raw"]
