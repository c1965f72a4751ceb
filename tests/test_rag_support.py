"""The support check and sentence evidence, on small hand-made passages (no models)."""

from __future__ import annotations

import pytest

from llmspace.rag.evidence import answerable, asked_kind, candidate_sentences, has_kind, score_sentences
from llmspace.rag.extractive import choose_sentences
from llmspace.rag.support import check_support, names, numbers, says_dont_know
from llmspace.rag.types import Chunk, SearchHit

PASSAGE = ("The grey-crested lark is about 14 centimetres long. A pale grey crest rises above its eyes. "
           "The female lays three to five eggs in May. The lark was first described by Margit Olander.")


def hit(text: str, heading: str = "", n: int = 0) -> SearchHit:
    return SearchHit(Chunk(id=f"d:{n}", doc_id="d", source="lark.md", title="Lark", heading=heading, text=text,
                           start=0, end=len(text)), 1.0, n + 1)


def verdict(question: str, answer: str, passage: str = PASSAGE):
    hits = [hit(passage)]
    ranked = score_sentences(question, hits)
    return check_support(question, answer, ranked, ranked, [passage])


def test_numbers_names_and_dont_know_are_recognised():
    assert numbers("It needs 8,192 tokens and 22.5 KiB, learning rate 1e-4.") == {"8192", "22.5", "1e-4"}
    assert numbers("1. SmolLM2-135M in source 2 has 30 layers") == {"30"}  # list number, name, source ref
    assert {"olander", "smollm2-135m"} <= names("It was described by Margit Olander. SmolLM2-135M is small.")
    assert "it" not in names("It was small.")
    assert says_dont_know("I don't know.") and says_dont_know("资料里没有提到这一点") and not says_dont_know("It is 14 cm.")


def test_a_supported_answer_passes():
    v = verdict("How long is the grey-crested lark?", "The grey-crested lark is about 14 centimetres long [1].")
    assert v.supported, v.reasons


@pytest.mark.parametrize("answer,reason", [
    ("The lark is about 41 centimetres long [1].", "41"),  # a wrong number
    ("The female lays three to five eggs in May 1987 [1].", "1987"),  # an invented date
    ("The lark was first described by Anna Berg [1].", "berg"),  # an invented name
    ("The source talks about the lark [1].", "0%"),  # none of what it adds is in the passage
    ("I don't know [1].", "do not answer"),
])
def test_unsupported_answers_are_caught_with_a_reason(answer, reason):
    q = "How long is the grey-crested lark?" if "centimetres" in answer else "Who first described the lark?"
    if "eggs" in answer:
        q = "When does the female lay her eggs?"
    if "talks about" in answer:
        q = "What does the lark look like?"
    v = verdict(q, answer)
    assert not v.supported and any(reason in r for r in v.reasons), v.reasons


def test_an_answer_from_another_sentence_than_the_question_asks_about_fails():
    # the answer's words are all in the passage, but it answers about eggs, not the crest
    v = verdict("What colour is the crest of the lark?", "The female lays three to five eggs in May [1].")
    assert not v.supported and any("not about what the question asks" in r for r in v.reasons)


def test_a_negated_answer_disagrees_with_its_sentence():
    v = verdict("Does the lark have a crest?", "The lark does not have a crest above its eyes [1].")
    assert not v.supported and any("negates" in r for r in v.reasons)
    # a yes/no lead-in is an answer to the question, not a negation of the sentence
    assert verdict("Is the crest red?", "No, a pale grey crest rises above its eyes [1].").supported


def test_asked_kind_and_has_kind():
    assert asked_kind("When does the female lay eggs?") == "date"
    assert asked_kind("What status code is returned when a client sends too much?") is None  # "when" mid-question
    assert asked_kind("How many eggs does she lay?") == "number"
    assert asked_kind("这座桥是哪一年修的？") == "date" and asked_kind("要发酵多少天？") == "number"
    assert has_kind("in May 1805", "date") and not has_kind("2048 tokens", "date")
    assert has_kind("三到五个", "number") and has_kind("three eggs", "number")


def test_candidates_join_semicolon_clauses_and_carry_table_headers():
    text = ("The conversion takes 20 seconds once; afterwards it loads in half a second.\n\n"
            "| precision | size |\n|---|---|\n| int4 | 68 MB |\n")
    sents = [s.text for s in candidate_sentences([hit(text)])]
    assert sents[0] == "The conversion takes 20 seconds once; afterwards it loads in half a second."
    assert "precision: int4; size: 68 MB." in sents


def test_the_question_focus_picks_the_section_that_answers():
    appearance = hit("The lark is small. A pale grey crest rises above the lark's eyes.", "Lark > Appearance", 0)
    diet = hit("The lark eats grass seeds in winter. The lark eats beetles in summer.", "Lark > Diet", 1)
    ranked = score_sentences("What does the lark eat in summer?", [appearance, diet])
    assert "beetles" in ranked[0].text
    ok, why = answerable("What does the lark eat in summer?", ranked)
    assert ok, why
    chosen = choose_sentences("What does the lark eat in summer?", ranked)
    assert all("crest" not in s.text for s in chosen)


def test_a_date_question_without_any_date_in_the_sources_is_not_answerable():
    ranked = score_sentences("When was the lark first described?", [hit(PASSAGE.replace(" in May", ""))])
    ok, why = answerable("When was the lark first described?", ranked)
    assert not ok and "date" in why


def test_a_bare_number_from_a_sentence_with_several_is_not_supported():
    text = "SmolLM2-135M has 9 query heads and 3 key/value heads, so each group of 3 query heads shares one set."
    hits = [hit(text)]
    q = "How many query heads share one key/value head?"
    ranked = score_sentences(q, hits)
    bare = check_support(q, "[1] 9\n\nThe answer is [1].", ranked, ranked, [text])
    assert not bare.supported and any("bare number" in r for r in bare.reasons)
    worded = check_support(q, "Each group of 3 query heads shares one set of keys and values [1].", ranked, ranked,
                           [text])
    assert not any("bare number" in r for r in worded.reasons)
