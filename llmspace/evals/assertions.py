"""Checks on one answer. Each returns an ``AssertionResult`` with a detail a
person can read in the report ("missing 'LoRA'", "cited en/02.md, not gold")."""

from __future__ import annotations

import re

from llmspace.evals.cases import Assertion, EvalCase
from llmspace.evals.results import AssertionResult, SystemOutput


def _fold(s: str, case_sensitive: bool) -> str:
    return s if case_sensitive else s.casefold()


def check(a: Assertion, case: EvalCase, out: SystemOutput) -> AssertionResult:
    text = out.text
    cs = a.case_sensitive
    if a.type == "contains":
        ok = _fold(a.value, cs) in _fold(text, cs)
        return AssertionResult(a.type, a.value, ok, "" if ok else f"missing {a.value!r}")
    if a.type == "not_contains":
        ok = _fold(a.value, cs) not in _fold(text, cs)
        return AssertionResult(a.type, a.value, ok, "" if ok else f"contains {a.value!r}")
    if a.type == "any_of":
        hits = [v for v in a.value if _fold(v, cs) in _fold(text, cs)]
        return AssertionResult(a.type, a.value, bool(hits),
                               f"found {hits[0]!r}" if hits else f"none of {len(a.value)} found")
    if a.type == "equals":
        ok = _fold(text.strip(), cs) == _fold(a.value.strip(), cs)
        return AssertionResult(a.type, a.value, ok, "" if ok else f"answer is {text.strip()[:60]!r}")
    if a.type == "regex":
        m = re.search(a.value, text)
        return AssertionResult(a.type, a.value, m is not None, f"matched {m.group(0)[:40]!r}" if m else "no match")
    if a.type == "max_tokens":
        ok = out.completion_tokens <= a.value
        return AssertionResult(a.type, a.value, ok, f"{out.completion_tokens} tokens")
    if a.type == "must_cite":
        return _must_cite(a, case, out)
    raise ValueError(f"unknown assertion type {a.type!r}")  # cases.py rejects these before a run


def _must_cite(a: Assertion, case: EvalCase, out: SystemOutput) -> AssertionResult:
    # a citation llmspace attached to an answer that cited nothing is not the answer citing its source
    valid = [c for c in out.cited if c.valid and c.origin != "attached"]
    if not valid:
        bad = [c.n for c in out.cited if not c.valid]
        attached = [c.n for c in out.cited if c.valid and c.origin == "attached"]
        why = (f"only invalid citations {bad}" if bad else
               f"no [n] citation of its own (llmspace attached {attached})" if attached else "no [n] citation")
        return AssertionResult(a.type, a.value, False, why)
    wanted = case.gold_sources if a.value == "gold" else a.value if isinstance(a.value, list) else None
    if wanted is None:
        return AssertionResult(a.type, a.value, True, f"cites {len(valid)} source(s)")
    hit = [c for c in valid if any(c.matches(g) for g in wanted)]
    cited = sorted({c.source for c in valid})
    return AssertionResult(a.type, a.value, bool(hit),
                           f"cites {hit[0].source}" if hit else f"cites {', '.join(cited)}; none expected")


def check_all(case: EvalCase, out: SystemOutput) -> list[AssertionResult]:
    return [check(a, case, out) for a in case.assertions]
