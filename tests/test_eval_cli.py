"""`llmspace eval ...` plumbing: exit codes, messages, history, the regression gate.

The system under test is a stand-in here (fast); test_eval_e2e.py runs the
same commands on the real model.
"""

from __future__ import annotations

import json

import pytest

from llmspace.cli import main
from llmspace.evals import runner

CASES = [{"id": f"c{i}", "question": f"say hello {i}", "tags": ["en"] if i % 2 else ["zh"],
          "assertions": [{"type": "contains", "value": "hello"}]} for i in range(4)]


@pytest.fixture
def answers(monkeypatch):
    """Case id -> answer text (or an exception) the stand-in system gives."""
    table: dict = {}

    def fake_call(self, case):
        out = table.get(case.id, "hello there")
        if isinstance(out, BaseException):
            raise out
        return runner.SystemOutput(out, prompt_tokens=12, completion_tokens=3, ttft_s=0.01, total_s=0.02)

    monkeypatch.setattr(runner.ServicesSystem, "__call__", fake_call)
    return table


@pytest.fixture
def set_file(tmp_path):
    p = tmp_path / "mini.jsonl"
    p.write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    return p


def runs(capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["eval", "ls", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_run_prints_summary_and_writes_reports(answers, set_file, capsys, llmspace_home):
    assert main(["eval", "run", str(set_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "pass rate: 100.0%" in out and "cost model: hardware" in out
    report = out.strip().splitlines()[-1].removeprefix("report: ")
    assert report.startswith(str(llmspace_home / "evals")) and report.endswith("report.html")
    [r] = runs(capsys)
    assert r["status"] == "complete" and r["n_cases"] == 4 and r["git_rev"]
    assert r["config"]["settings"]["chat_model"] == "smollm2-135m-instruct"


def test_filters_and_json_output(answers, set_file, capsys):
    assert main(["eval", "run", str(set_file), "--tag", "zh", "--no-progress", "--json",
                 "--usd-per-1m-prompt", "1", "--usd-per-1m-completion", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"]["n_cases"] == 2
    assert data["metrics"]["cost_usd"] == pytest.approx(2 * (12 * 1 + 3 * 2) / 1e6)


def test_failing_case_shows_in_diff_and_the_gate_exits_non_zero(answers, set_file, capsys):
    assert main(["eval", "run", str(set_file), "--no-progress"]) == 0
    answers["c2"] = "goodbye"  # built to fail
    assert main(["eval", "run", str(set_file), "--no-progress", "--baseline", "latest"]) == 0  # report only
    capsys.readouterr()
    assert main(["eval", "run", str(set_file), "--no-progress", "--baseline", "latest~1",
                 "--fail-on-regression"]) == 3
    err = capsys.readouterr().err
    assert "REGRESSION: pass_rate dropped from 1.000 to 0.750" in err and "c2: pass -> fail" in err
    assert main(["eval", "run", str(set_file), "--no-progress", "--baseline", "latest~2",
                 "--fail-on-regression", "--tolerance", "0.3"]) == 0
    capsys.readouterr()
    assert main(["eval", "diff", "latest~3", "latest"]) == 0
    out = capsys.readouterr().out
    assert "c2: pass -> fail" in out and "contains 'hello': pass -> fail (missing 'hello')" in out
    assert main(["eval", "show", "latest"]) == 0
    assert "FAIL c2" in capsys.readouterr().out
    assert main(["eval", "report", "latest"]) == 0


@pytest.mark.parametrize("content, words", [
    (None, "not found"),
    ("", "empty"),
    ('{"id": "x", "question": "q", "assertions": []}\nnot json\n', ":2: not valid JSON"),
    ('{"id": "x", "assertions": []}\n', ":1: case has no `question`"),
    ('{"id": "x", "question": "q", "assertions": [{"type": "smells_like", "value": 1}]}\n', "unknown assertion type"),
    ('{"id": "x", "question": "q", "assertions": [{"type": "regex", "value": "[a-"}]}\n', ":1: assertions[0]: regex"),
    ('{"id": "x", "question": "q", "index": "nope", "assertions": []}\n', ":1: index 'nope' does not exist"),
])
def test_bad_input_is_named_and_nothing_is_stored(answers, tmp_path, capsys, content, words):
    p = tmp_path / "bad.jsonl"
    if content is not None:
        p.write_text(content, encoding="utf-8")
    assert main(["eval", "run", str(p), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert words in err and str(p) in err
    assert runs(capsys) == []


def test_unknown_index_override_and_gate_without_baseline(answers, set_file, capsys):
    assert main(["eval", "run", str(set_file), "--index", "nope"]) == 1
    assert "--index 'nope' does not exist" in capsys.readouterr().err
    assert main(["eval", "run", str(set_file), "--fail-on-regression"]) == 1
    assert "needs --baseline" in capsys.readouterr().err
    assert main(["eval", "run", str(set_file), "--baseline", "nope"]) == 1
    assert "No eval run 'nope'" in capsys.readouterr().err
    assert runs(capsys) == []


def test_ctrl_c_stores_the_run_as_incomplete(answers, set_file, capsys):
    answers["c2"] = KeyboardInterrupt()
    assert main(["eval", "run", str(set_file), "--no-progress"]) == 130
    assert "stored as INCOMPLETE (2/4 cases)" in capsys.readouterr().err
    [r] = runs(capsys)
    assert r["status"] == "incomplete" and r["metrics"]["n_cases"] == 2
    assert main(["eval", "show", r["id"]]) == 0
    assert "incomplete (interrupted (Ctrl-C) after 2/4 cases)" in capsys.readouterr().out
    # an incomplete run cannot be a baseline
    assert main(["eval", "run", str(set_file), "--no-progress", "--baseline", r["id"]]) == 1


def test_unknown_pattern_is_rejected_before_running(answers, set_file, capsys):
    assert main(["eval", "run", str(set_file), "--pattern", "no-such-pattern", "--no-progress"]) == 1
    assert "pattern" in capsys.readouterr().err
    assert runs(capsys) == []


def test_pattern_option_is_not_offered_until_prompt_patterns_exist(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "run", "--help"])
    assert "--pattern" not in capsys.readouterr().out
