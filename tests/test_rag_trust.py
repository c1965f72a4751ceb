"""Answers you can trust: the right section or a fallback, never a wrong answer
with a valid-looking citation; "I don't know" when the sources do not answer;
citations that say who made them, counted apart by the eval.

The retrieval, sentence scoring and support check run on the real MiniLM
embedder and real indexes. Where a test needs the model to answer a particular
way (answer from the wrong section, cite nothing), a scripted engine stands in
for it: SmolLM2's greedy output is not ours to choose. The real model's own
answers are tested too.
"""

from __future__ import annotations

import pytest

from llmspace.config import Settings
from llmspace.engine.base import Delta, Usage
from llmspace.services import Services

pytestmark = pytest.mark.slow

LARK = """# The grey-crested lark

## Appearance

The grey-crested lark is a small bird about 14 centimetres long. Its back is sandy brown with dark streaks,
and a pale grey crest rises above its eyes. In flight it shows white outer tail feathers.

## Diet

The grey-crested lark eats the seeds of wild grasses in winter and switches to beetles and caterpillars in
summer. A lark walks slowly across the field while it feeds, picking its food from the ground.

## Breeding

Larks nest on the ground in a shallow cup of dry grass. The female lays three to five eggs in May, and the
chicks leave the nest after ten days.
"""

TOWN = """# 青石镇

## 历史

青石镇建于一七二三年，最早是运河边的一个渡口。镇上的石桥修于一八〇五年，共有七个桥洞。

## 特产

青石镇出产桂花糕和米酒。桂花糕每年九月开始制作，用的是本地的糯米和新鲜桂花。米酒要在陶缸里发酵四十天。

## 交通

从青石镇坐长途汽车到省城需要两个小时。镇上没有火车站，最近的车站在二十公里外的河口县。
"""


class ScriptedEngine:
    """Stands in for the chat model where a test needs a particular (bad) answer."""

    model_id, backend, context_window = "scripted", "fake", 2048

    def __init__(self, reply: str):
        self.reply, self.prompts = reply, []

    def load(self):
        return self

    def count_prompt_tokens(self, messages) -> int:
        return sum(len(m.content) for m in messages) // 4

    def stream(self, messages, params):
        self.prompts.append(messages[-1].content)
        for word in self.reply.split(" "):
            yield Delta(word + " ")
        yield Delta("", finish_reason="stop", usage=Usage(10, len(self.reply.split())))


@pytest.fixture(scope="module")
def services(tmp_path_factory, session_services):
    home = tmp_path_factory.mktemp("trust_home")
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    svc = Services(Settings.load(env={}, home=home))
    svc.__dict__["embedder"] = session_services.embedder
    svc.__dict__["engine"] = session_services.engine
    docs = tmp_path_factory.mktemp("trust_docs")
    (docs / "lark.md").write_text(LARK, encoding="utf-8")
    (docs / "town.md").write_text(TOWN, encoding="utf-8")
    svc.rag.build([docs], "trust")
    return svc


def with_engine(services, engine):
    svc = Services(services.settings)
    svc.__dict__["embedder"] = services.embedder
    svc.__dict__["engine"] = engine
    return svc


def test_an_answer_from_the_wrong_section_falls_back_to_the_right_sentence(services):
    # the question shares "lark" and "grey-crested" with every section; the model answers from Diet
    wrong = with_engine(services, ScriptedEngine("The grey-crested lark eats the seeds of wild grasses [1]."))
    a = wrong.rag.answer("What colour is the crest of the grey-crested lark?", "trust", mode="generate")
    assert a.mode == "extractive", a.to_dict()
    assert "pale grey crest" in a.text and "seeds" not in a.text
    assert a.support and not a.support["supported"] and a.support["reasons"]
    assert all(c.origin == "extractive" and "Appearance" in c.heading for c in a.citations)
    assert any("not supported by the sources" in n for n in a.notes)


def test_an_invented_date_is_not_shown_with_a_citation(services):
    made_up = with_engine(services, ScriptedEngine("The female lays three to five eggs in March 1987 [1]."))
    a = made_up.rag.answer("When does the female grey-crested lark lay her eggs?", "trust", mode="generate")
    assert a.mode == "extractive" and "May" in a.text and "1987" not in a.text
    assert any("1987" in r for r in a.support["reasons"])


def test_the_real_model_answers_right_or_falls_back_never_wrong_with_a_citation(services):
    for question, fact in [("What colour is the crest of the grey-crested lark?", "grey"),
                           ("What does the grey-crested lark eat in summer?", "beetles"),
                           ("How many eggs does the female grey-crested lark lay?", "three to five")]:
        a = services.rag.answer(question, "trust", mode="generate", max_tokens=48)
        if a.cited_valid and a.mode != "no_answer":
            assert fact in a.text.lower(), a.to_dict()
        model_cites = [c for c in a.citations if c.origin == "model"]
        assert not model_cites or a.support["supported"]


@pytest.mark.parametrize("question,expected", [
    ("Who first described the grey-crested lark?", "I don't know"),
    ("青石镇的石桥是谁设计的？", "我不知道"),
])
def test_a_question_the_sources_do_not_answer_gets_i_dont_know(services, question, expected):
    a = services.rag.answer(question, "trust")
    assert a.mode == "no_answer" and a.text.startswith(expected), a.to_dict()
    assert a.citations == [] and a.notes


def test_auto_quotes_for_the_small_default_model_and_says_why(services):
    a = services.rag.answer("What colour is the crest of the grey-crested lark?", "trust")
    assert a.mode == "extractive" and "pale grey crest" in a.text
    assert any("mode=generate" in n for n in a.notes)


def test_answerable_questions_in_both_languages_are_answered(services):
    en = services.rag.answer("What colour is the crest of the grey-crested lark?", "trust", mode="extractive")
    zh = services.rag.answer("从青石镇坐汽车去省城要多久？", "trust")
    assert en.mode == "extractive" and "pale grey crest" in en.text
    assert zh.mode == "extractive" and "两个小时" in zh.text


def test_chinese_extractive_answer_holds_the_answer_and_nothing_unrelated(services):
    a = services.rag.answer("米酒要发酵多少天？", "trust")
    assert a.mode == "extractive" and "四十天" in a.text
    assert "桂花糕" not in a.text and "渡口" not in a.text  # no padding with unrelated sentences
    assert 1 <= len(a.citations) <= 2 and all(c.origin == "extractive" for c in a.citations)


def test_an_attached_citation_is_labelled_and_counted_apart(services):
    from llmspace.evals.assertions import check
    from llmspace.evals.cases import Assertion, EvalCase
    from llmspace.evals.metrics import compute_metrics
    from llmspace.evals.results import CaseResult, from_answer
    from llmspace.evals.runner import _ref

    silent = with_engine(services, ScriptedEngine("It has a pale grey crest above its eyes."))
    a = silent.rag.answer("What colour is the crest of the grey-crested lark?", "trust", mode="generate")
    assert a.mode == "generate" and a.support["supported"]
    assert "[" not in a.text  # the model wrote no [n], and llmspace does not write one into its text
    assert [c.origin for c in a.citations] == ["attached"] and not a.cited_by_model
    body = a.to_dict()
    assert body["citations"][0]["origin"] == "attached"
    assert any("attached" in n and "not the model's" in n for n in a.notes)

    out = from_answer(a)
    case = EvalCase(id="c", question=a.question, index="trust", assertions=[Assertion(type="must_cite", value=True)])
    assert not check(case.assertions[0], case, out).passed  # attached is not the answer citing its source
    r = CaseResult(case_id="c", kind="rag", question=a.question, tags=[], gold_sources=[],
                   cited=[_ref(c) for c in out.cited], supported=out.supported)
    m = compute_metrics([r])
    assert m["attached_citation_rate"] == 1 and m["native_citation_rate"] == 0 and m["cites_source_rate"] == 0
    assert m["citation_rate"] == 1  # the any-origin rate still sees it, and says so in its name


def test_a_supported_model_citation_is_native(services):
    cites = with_engine(services, ScriptedEngine("Its crest is pale grey [1]."))
    a = cites.rag.answer("What colour is the crest of the grey-crested lark?", "trust", mode="generate")
    assert a.mode == "generate" and a.cited_by_model and a.support["supported"]
    assert [c.origin for c in a.citations] == ["model"]


def test_the_http_api_labels_an_attached_citation(services):
    from fastapi.testclient import TestClient

    from llmspace.serve.app import create_app

    silent = with_engine(services, ScriptedEngine("It has a pale grey crest above its eyes."))
    with TestClient(create_app(silent, with_ui=False)) as client:
        r = client.post("/v1/rag/answer", json={"index": "trust", "answer_mode": "generate",
                                                "question": "What colour is the crest of the grey-crested lark?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["origin"] for c in body["citations"]] == ["attached"] and "[" not in body["answer"]
    assert body["support"]["supported"] is True
