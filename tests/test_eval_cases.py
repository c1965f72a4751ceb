"""Eval-set format: the bundled sets are valid, every bad input is named with file and line."""

from __future__ import annotations

import json

import pytest

from llmspace.evals.cases import (
    ASSERTION_TYPES,
    CASE_KEYS,
    EvalSetError,
    bundled_sets,
    load_eval_set,
    parse_case,
    schema_path,
)

GOOD = {"id": "c1", "question": "What is RAG?", "assertions": [{"type": "contains", "value": "retrieval"}]}


def write(tmp_path, lines, name="set.jsonl"):
    p = tmp_path / name
    p.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln, ensure_ascii=False)) + "\n"
                         for ln in lines), encoding="utf-8")
    return p


def error_of(path, **kw) -> EvalSetError:
    with pytest.raises(EvalSetError) as ei:
        load_eval_set(path, **kw)
    return ei.value


def test_starter_set_is_bundled_valid_bilingual_and_big_enough():
    assert "starter" in bundled_sets()
    s = load_eval_set(None, known_indexes={"roadmap"})
    assert s.name == "starter" and len(s.cases) >= 20
    tags = {t for c in s.cases for t in c.tags}
    assert {"en", "zh"} <= tags
    assert all(c.index == "roadmap" and c.gold_sources for c in s.cases if c.kind == "rag")
    assert len(s.sha256) == 64


def test_schema_file_matches_the_validator():
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(CASE_KEYS)
    item = schema["properties"]["assertions"]["items"]
    assert tuple(item["properties"]["type"]["enum"]) == ASSERTION_TYPES


def test_all_assertion_types_and_messages_cases_load(tmp_path):
    p = write(tmp_path, [
        {"id": "a", "question": "q", "index": "roadmap", "gold_sources": ["en/05-rag.md"], "tags": ["x"],
         "assertions": [{"type": "contains", "value": "v", "case_sensitive": True},
                        {"type": "any_of", "value": ["a", "b"]}, {"type": "not_contains", "value": "z"},
                        {"type": "regex", "value": r"\d+"}, {"type": "equals", "value": "v"},
                        {"type": "must_cite", "value": "gold"}, {"type": "must_cite"},
                        {"type": "max_tokens", "value": 64}]},
        "// a comment line",
        "",
        {"id": "b", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
         "assertions": [], "reference": "hello", "notes": "n"},
    ])
    s = load_eval_set(p, known_indexes={"roadmap"})
    assert [c.id for c in s.cases] == ["a", "b"]
    assert s.cases[1].prompt_text == "hi" and s.cases[1].kind == "chat"
    assert s.cases[0].line == 1 and s.cases[1].line == 4


def test_missing_file(tmp_path):
    e = error_of(tmp_path / "nope.jsonl")
    assert "not found" in e.message and "nope.jsonl" in e.message


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n\n", encoding="utf-8")
    e = error_of(p)
    assert "empty" in e.message and e.file == str(p)


def test_line_that_is_not_json(tmp_path):
    p = write(tmp_path, [GOOD, '{"id": "c2", "question": "oops"'])
    e = error_of(p)
    assert e.line == 2 and f"{p}:2: not valid JSON" in e.message


def test_case_without_a_question(tmp_path):
    p = write(tmp_path, [GOOD, {"id": "c2", "assertions": []}])
    e = error_of(p)
    assert e.line == 2 and "no `question`" in e.message


def test_unknown_assertion_type(tmp_path):
    p = write(tmp_path, [{**GOOD, "assertions": [{"type": "containz", "value": "x"}]}])
    e = error_of(p)
    assert e.line == 1 and "unknown assertion type 'containz'" in e.message


def test_regex_that_does_not_compile(tmp_path):
    p = write(tmp_path, [GOOD, {**GOOD, "id": "c2", "assertions": [{"type": "regex", "value": "(unclosed"}]}])
    e = error_of(p)
    assert e.line == 2 and "does not compile" in e.message


def test_index_that_does_not_exist(tmp_path):
    p = write(tmp_path, [{**GOOD, "index": "no-such-index"}])
    e = error_of(p, known_indexes={"roadmap"})
    assert e.line == 1 and "index 'no-such-index' does not exist" in e.message


def test_unknown_keys_and_duplicate_ids_are_all_listed(tmp_path):
    p = write(tmp_path, [{**GOOD, "questoin": "typo"}, GOOD, GOOD])
    e = error_of(p)
    assert e.line == 1
    assert "unknown key(s) 'questoin'" in e.message
    assert f"{p}:3: id 'c1' is already used on line 2" in e.message
    assert len(e.problems) == 2


@pytest.mark.parametrize("bad, words", [
    ({"type": "contains"}, "non-empty string `value`"),
    ({"type": "any_of", "value": []}, "non-empty list"),
    ({"type": "max_tokens", "value": 0}, "integer `value` >= 1"),
    ({"type": "must_cite", "value": 3}, "must_cite `value`"),
    ({"type": "contains", "value": "x", "extra": 1}, "unknown key(s) 'extra'"),
])
def test_bad_assertion_values(tmp_path, bad, words):
    case = {**GOOD, "index": "roadmap", "assertions": [bad]}
    e = error_of(write(tmp_path, [case]))
    assert words in e.message


def test_must_cite_needs_an_index_and_messages_need_a_final_user_turn(tmp_path):
    p = write(tmp_path, [{**GOOD, "assertions": [{"type": "must_cite"}]},
                         {"id": "m", "messages": [{"role": "user", "content": "a"},
                                                  {"role": "assistant", "content": "b"}], "assertions": []}])
    e = error_of(p)
    assert "must_cite` assertion needs an `index`" in e.message
    assert f"{p}:2: the last message must be from the user" in e.message


def test_not_utf8(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(json.dumps(GOOD).encode() + b"\n" + '{"id": "caf\xe9"}'.encode("latin-1") + b"\n")
    e = error_of(p)
    assert e.line == 2 and "UTF-8" in e.message


def test_select_by_tag_and_id(tmp_path):
    p = write(tmp_path, [{**GOOD, "id": "en-1", "tags": ["en"]}, {**GOOD, "id": "zh-1", "tags": ["zh"]}])
    s = load_eval_set(p)
    assert [c.id for c in s.select(tags=["zh"]).cases] == ["zh-1"]
    assert [c.id for c in s.select(ids=["en-*"]).cases] == ["en-1"]
    with pytest.raises(EvalSetError, match="No case"):
        s.select(tags=["fr"])


# ---- one source of truth: CaseModel validates, and schema.json is generated from it ----
def test_shipped_schema_is_the_one_generated_from_the_model():
    from llmspace.evals.case_model import case_json_schema

    shipped = json.loads(schema_path().read_text(encoding="utf-8"))
    assert shipped == case_json_schema(), "schema.json is stale: run `python -m llmspace.evals.schema`"


INVALID = [
    {**GOOD, "questoin": "typo"},                                           # unknown key
    {"id": "x", "assertions": []},                                          # neither question nor messages
    {**GOOD, "messages": [{"role": "user", "content": "hi"}]},              # both
    {**GOOD, "id": "  "},                                                    # blank id
    {**GOOD, "assertions": [{"type": "containz", "value": "x"}]},           # unknown assertion type
    {**GOOD, "assertions": [{"type": "contains"}]},                         # value missing
    {**GOOD, "assertions": [{"type": "max_tokens", "value": 0}]},           # value out of range
    {**GOOD, "assertions": [{"type": "contains", "value": "x", "case_sensitive": "yes"}]},
    {**GOOD, "assertions": [{"type": "must_cite"}]},                        # must_cite without index
    {**GOOD, "index": "roadmap", "assertions": [{"type": "must_cite", "value": "gold"}]},  # gold, no gold_sources
    {"id": "m", "messages": [{"role": "robot", "content": "hi"}], "assertions": []},
    {"id": "m", "messages": [{"role": "user", "content": "hi"}], "index": "roadmap", "assertions": []},
    {**GOOD, "tags": ["en", "en"]},                                          # duplicate tag
]
VALID = [
    GOOD,
    {"id": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
     "assertions": [{"type": "max_tokens", "value": 5}], "tags": ["chat"]},
    {**GOOD, "index": "roadmap", "gold_sources": ["en/05-rag.md"],
     "assertions": [{"type": "must_cite", "value": "gold"}, {"type": "any_of", "value": ["a"]}]},
]


@pytest.mark.parametrize("case", INVALID)
def test_invalid_cases_are_rejected_with_a_message(case):
    errs, parsed = parse_case(case)
    assert parsed is None and errs and all(isinstance(e, str) and e for e in errs)


@pytest.mark.parametrize("case", VALID)
def test_valid_cases_pass(case):
    errs, parsed = parse_case(case)
    assert errs == [] and parsed is not None and parsed.id == case["id"]


def test_the_json_schema_agrees_with_the_model():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(schema_path().read_text(encoding="utf-8")))
    for case in VALID:
        assert not list(validator.iter_errors(case)), case
    for case in INVALID:
        assert list(validator.iter_errors(case)), case


@pytest.mark.parametrize("bad, words", [
    ({**GOOD, "tags": ["en", "en"]}, "`tags` lists 'en' twice"),
    ({**GOOD, "assertions": [{"type": "contains", "value": "x", "case_sensitive": "yes"}]},
     "assertions[0]: `case_sensitive` must be true or false"),
    ({"id": "m", "messages": [{"role": "robot", "content": "hi"}], "assertions": []},
     "messages[0].role is 'robot'"),
    ({**GOOD, "questoin": "a", "notez": "b"}, "unknown key(s) 'questoin', 'notez'; allowed: id, question"),
    ({**GOOD, "id": "x" * 201}, "`id` must be at most 200 characters"),
])
def test_model_errors_read_like_the_rest(tmp_path, bad, words):
    e = error_of(write(tmp_path, [bad]))
    assert e.line == 1 and words in e.message and len(e.problems) == 1
