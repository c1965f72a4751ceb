"""Does the passage an answer cites support what the answer asserts?

A generated answer is *supported* only when all of these hold (each failure is
a reason a person can read):

1. it answers: it is not an "I don't know", and it says something the question
   did not already say (at least one new content word);
2. every number and date in it (beyond those in the question) is in the cited
   passages;
3. every name in it (capitalised or mixed letters-and-digits words such as
   "Olander", "SmolLM2-135M", beyond those in the question) is in the cited
   passages;
4. most of its new content words are in the cited passages (``min_terms``);
   for Chinese, words or character bigrams;
5. it answers the question's focus: the sentence of the cited passages that
   best matches the answer covers the question's distinctive terms
   (``min_focus``); when it lies in another passage than the best sentence for
   the question, it must be about as relevant (``min_relative``: the wrong
   section of a document that shares the question's words fails here); and the
   answer holds a number, date or name when the question asks for one;
6. it does not negate what that sentence says, or the reverse.

The thresholds were chosen on ``benchmarks/data/support_dev.jsonl`` (roadmap
passages); ``benchmarks/bench_answers.py`` reports the check's precision and
recall on the held-out ``benchmarks/data/heldout/support.jsonl``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llmspace.rag.citations import strip_markers
from llmspace.rag.evidence import Sentence, asked_kind, has_kind
from llmspace.rag.text import analyze, cjk_bigrams, detect_lang

THRESHOLDS = {"min_terms": 0.6, "min_focus": 0.15, "min_relative": 0.8}

_NUM_RE = re.compile(r"\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_.'][A-Za-z0-9]+)*")
_SENT_START_RE = re.compile(r"(?:^|[.!?:;]\s+|\n)\W*$")
_NEG_EN = re.compile(r"\b(?:not|no|never|none|cannot|can't|don't|doesn't|isn't|aren't|won't|without|neither|nor)\b",
                     re.I)
_NEG_ZH = re.compile(r"不是|并非|不会|不能|不要|不必|不需要|不用|没有|无法|从不|从未")
_YES_NO = re.compile(r"^\s*(?:yes|no|yeah|nope)\b[,.!:]?\s*|^\s*(?:是的|对|不对|不是)[，,。]\s*", re.I)
# words an answer wraps a fact in; they assert nothing
_FILLER = frozenset("according source sources passage text answer question say says said state states stated mention "
                    "mentions mentioned yes no based given provided".split()) | {"根据", "来源", "资料", "原文", "提到",
                                                                                  "说明", "答案", "回答"}
_DONT_KNOW = re.compile(r"\b(?:i don'?t know|i do not know|not (?:mentioned|stated|specified|provided|given)|"
                        r"(?:the )?sources? do(?:es)? not (?:say|mention|contain|state))\b|不知道|没有提到|未提及|无法回答",
                        re.I)
_COMMON_CAPS = frozenset("""the a an it this that these those there they he she we you i in on at to of for and or but if
when while because so as by with from after before during according yes no answer source sources question its their
however also then""".split())


@dataclass
class SupportVerdict:
    supported: bool
    reasons: list[str] = field(default_factory=list)
    evidence: Sentence | None = None  # the cited sentence that best matches the answer
    parts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"supported": self.supported, "reasons": self.reasons, "parts": self.parts,
                "evidence": None if self.evidence is None else {"n": self.evidence.n, "text": self.evidence.text}}


def _norm_num(s: str) -> str:
    s = s.replace(",", "")
    return s[:-2] if s.endswith(".0") else s


# list numbering ("1." "(2)" at a line start) and source references ("source 1", "Answer 1:") are not claims
_NOT_CLAIM_RE = re.compile(r"^\s*(?:\(\d+\)|\d+[.)])\s+|\b(?:sources?|answers?|sentences?|来源)\s*\d+\b",
                           re.I | re.M)


def numbers(text: str) -> set[str]:
    """Numbers as written, thousands separators dropped ("8,192" -> "8192"); those inside names
    ("SmolLM2", "L6") are names, not numbers."""
    text = _NOT_CLAIM_RE.sub(" ", text)
    out = set()
    for m in _NUM_RE.finditer(text):
        a, b = m.start(), m.end()
        if (a and text[a - 1].isalpha()) or (b < len(text) and text[b].isalpha() and text[b:b + 1].isascii()
                                             and text[b:b + 2].lower() not in ("st", "nd", "rd", "th")):
            continue
        out.add(_norm_num(m.group().rstrip(".,")))
    return out


def names(text: str) -> set[str]:
    """Proper names and identifiers: a capitalised word not at a sentence start, an all-caps word, or a word
    mixing letters and digits. Lower-cased."""
    out = set()
    for m in _NAME_RE.finditer(text):
        w = m.group()
        mixed = any(c.isdigit() for c in w) and any(c.isalpha() for c in w)
        caps = w[0].isupper() and w.lower() not in _COMMON_CAPS
        if mixed or (caps and len(w) > 1 and not _SENT_START_RE.search(text[:m.start()])):
            out.add(w.lower().rstrip("'s"))
    return out


_FLAGGED_RE = re.compile(r"\[\s*\d{1,3}\??(?:\s*[,，、]\s*\d{1,3}\??)*\s*\]")
_CLAUSE_RE = re.compile(r"[,，;；:：、()（）]\s*|\s+(?:and|but|while|whereas)\s+|而|但")


def _clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE_RE.split(text) if c and c.strip()]


def _negated(text: str) -> bool:
    text = _YES_NO.sub("", text)  # "No, it is optional" answers a yes/no question; it negates nothing
    return bool(_NEG_ZH.search(text) if detect_lang(text) == "zh" else _NEG_EN.search(text))


def _closest_clause(answer: str, sentence: str) -> str:
    terms = set(analyze(answer))
    return max(_clauses(sentence) or [sentence], key=lambda c: len(terms & set(analyze(c))))


def says_dont_know(text: str) -> bool:
    return bool(_DONT_KNOW.search(text))


def check_support(question: str, answer: str, cited: list[Sentence], ranked: list[Sentence],
                  cited_texts: list[str], thresholds: dict | None = None) -> SupportVerdict:
    """``cited``: the candidate sentences of the cited sources; ``ranked``: every candidate sentence of
    every given source, scored against the question (``evidence.score_sentences``), best first;
    ``cited_texts``: the cited passages' full text."""
    th = {**THRESHOLDS, **(thresholds or {})}
    content = strip_markers(_FLAGGED_RE.sub(" ", answer))  # "[9?]": an invalid citation, flagged; not a claim
    reasons: list[str] = []
    parts: dict = {}
    if says_dont_know(content):
        return SupportVerdict(False, ["the model said the sources do not answer"], None, parts)
    passage = "\n".join(cited_texts)
    p_low = passage.lower()
    q_low = question.lower()
    lang = detect_lang(content)
    a_terms = set(analyze(content)) - _FILLER
    ab = cjk_bigrams(content)

    def overlap(s: Sentence) -> float:
        st = set(analyze(s.text))
        x = len(a_terms & st) / (len(a_terms) or 1)
        if ab:
            x = max(x, len(ab & cjk_bigrams(s.text)) / len(ab))
        return x

    by_overlap = sorted(cited, key=overlap, reverse=True)
    # 2. numbers: in the sentences the answer rests on, not merely somewhere in the passage
    near = " ".join(s.text for s in by_overlap[:2]) if by_overlap else passage
    missing_nums = sorted(n for n in numbers(content) - numbers(question) if n not in numbers(near))
    if missing_nums:
        where = "no cited source" if not set(missing_nums) & numbers(passage) else "the sentences it rests on"
        reasons.append(f"the number{'s' if len(missing_nums) > 1 else ''} {', '.join(missing_nums)} "
                       f"{'are' if len(missing_nums) > 1 else 'is'} in {where}")
    # 3. names
    missing_names = sorted(n for n in names(content) if n not in q_low and n not in p_low)
    if missing_names:
        reasons.append(f"{', '.join(repr(n) for n in missing_names[:3])} "
                       f"{'are' if len(missing_names) > 1 else 'is'} in no cited source")
    # 1 + 4. new content words
    q_terms = set(analyze(question))
    new_terms = {t for t in analyze(content) if not t.isdigit()} - q_terms - _FILLER  # numbers: checked in 2.
    new_nums = numbers(content) - numbers(question)
    p_terms = set(analyze(passage))
    share = len(new_terms & p_terms) / len(new_terms) if new_terms else 0.0
    if lang == "zh":
        nb = cjk_bigrams(content) - cjk_bigrams(question)
        if nb:
            share = max(share, len(nb & cjk_bigrams(passage)) / len(nb))
    parts["term_share"] = round(share, 3)
    if not new_terms and not new_nums:
        reasons.append("the answer said too little: nothing beyond the question")
    elif not ({t for t in analyze(content) if not t.isdigit()} - _FILLER) and \
            len(numbers(" ".join(near)) - numbers(question)) > 1:
        # "9" for "how many query heads share a KV head?" from "9 query heads and 3 KV heads": which one?
        reasons.append("the answer is a bare number, and the cited sentence states several")
    elif new_terms and share < th["min_terms"]:
        reasons.append(f"only {share:.0%} of the answer's words are in the cited source")
    # 5. focus: the cited sentence the answer rests on must be about what was asked
    evidence = by_overlap[0] if by_overlap else None
    if evidence is not None:
        top = ranked[0] if ranked else evidence
        focus = max(evidence.parts.get("focus", 0.0), evidence.parts.get("sub", 0.0))
        relative = evidence.score / top.score if top.score > 0 else 0.0
        parts.update(focus=round(focus, 3), relative=round(relative, 3))
        # in another passage than the best sentence for the question and clearly weaker: the answer is about
        # something else (the section that shares the question's words); within one passage focus decides
        if focus < th["min_focus"] or (top.n != evidence.n and relative < th["min_relative"]):
            reasons.append("the cited sentence it rests on is not about what the question asks "
                           f"({evidence.text[:80]!r})")
        elif _negated(content) != _negated(_closest_clause(content, evidence.text)):
            reasons.append("the answer and the cited sentence disagree (one negates)")
    kind = asked_kind(question)
    if kind and not has_kind(content, kind, question):
        reasons.append(f"the question asks for a {kind} and the answer gives none")
    return SupportVerdict(not reasons, reasons, evidence, parts)
