"""Text analysis shared by chunking, BM25 and extractive answers.

- ``detect_lang``: "zh" when CJK characters dominate, else "en" (the two
  languages of the bundled corpus; other scripts fall under "en").
- ``analyze``: BM25 terms. English: lower-cased words minus stop words, a light
  plural strip. Chinese: jieba's search-mode segmentation (long words *and* their
  sub-words, so "检索增强生成" also matches "检索"), minus stop words.
- ``sentence_spans``: sentence boundaries for English (. ! ? ;) and Chinese
  (。！？；), plus markdown line structure (list items, table rows, blank lines).

jieba is imported on first use (it loads a 5 MB dictionary, ~1 s).
"""

from __future__ import annotations

import logging
import re
import threading

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{CJK}]")
_TERM_RE = re.compile(f"[{CJK}]+|[a-z0-9]+(?:[+#]+|(?:[.\\-_][a-z0-9]+)*)")
_WORD_RE = re.compile(r"[A-Za-z]+")

EN_STOP = frozenset("""
a an and are as at be been but by can could do does did for from has have how i if in into is it its
me my no not of on or our so such than that the their them then there these they this to was we were
what when where which who whom why will with would you your about also may might should shall via
""".split())
ZH_STOP = frozenset("""
的 了 是 在 和 与 及 或 也 就 都 而 之 把 被 让 给 对 从 到 为 以 于 中 上 下 这 那 这个 那个 这些 那些 一个 一种
什么 怎么 怎样 怎么样 如何 为什么 哪些 哪个 吗 呢 吧 啊 呀 么 有 没有 会 能 可以 要 需要 应该 我 你 他 她 它 我们 你们 他们
请 问 是否 多少 几 个 种 时 时候 里 里面 其 该 等 等等
""".split())

_jieba = None
_jieba_lock = threading.Lock()


def _get_jieba():
    global _jieba
    if _jieba is None:
        with _jieba_lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)  # it prints "Building prefix dict..." otherwise
                jieba.initialize()
                _jieba = jieba
    return _jieba


def detect_lang(text: str) -> str:
    """ "zh" if CJK characters make up at least 30% of the words (a CJK character
    counts as one word), else "en"."""
    cjk = len(_CJK_RE.findall(text))
    if cjk == 0:
        return "en"
    latin = len(_WORD_RE.findall(text))
    return "zh" if cjk / (cjk + latin) >= 0.3 else "en"


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def analyze(text: str) -> list[str]:
    """BM25 terms of ``text`` (mixed English/Chinese)."""
    out: list[str] = []
    for m in _TERM_RE.finditer(text.lower()):
        seg = m.group()
        if _CJK_RE.match(seg):
            if len(seg) == 1:
                if seg not in ZH_STOP:
                    out.append(seg)
                continue
            for w in _get_jieba().lcut_for_search(seg):
                if w not in ZH_STOP:
                    out.append(w)
        elif seg not in EN_STOP:
            out.append(_stem(seg))
            if len(seg) > 2 and any(c in seg for c in ".-_"):  # "gpt-4", "top_k": the parts match too
                out.extend(_stem(p) for p in re.split(r"[.\-_]", seg) if p and p not in EN_STOP)
    return out


# ---------------------------------------------------------------- sentences
# A sentence ends after terminal punctuation (plus closing quotes/brackets);
# for '.', '!' and '?' only when whitespace follows (so 3.14 and e.g. file.md stay whole).
_END_RE = re.compile(r"[。！？；][”’」』）)\]\"']*|[.!?;][\"')\]]*(?=\s)")
# Markdown structure that starts a new unit at a line start.
_LINE_START_RE = re.compile(r"\n(?=[ \t]*(?:[-*+]\s|\d+[.)]\s|#|\||>|```)|[ \t]*\n)")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans ``(s, e)`` inside ``text[start:end]``, whitespace trimmed,
    in order, non-overlapping; positions index into ``text``."""
    end = len(text) if end is None else end
    cuts = {start, end}
    seg = text[start:end]
    for m in _END_RE.finditer(seg):
        cuts.add(start + m.end())
    for m in _LINE_START_RE.finditer(seg):
        cuts.add(start + m.start())
    bounds = sorted(cuts)
    spans: list[tuple[int, int]] = []
    for a, b in zip(bounds, bounds[1:]):
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            spans.append((a, b))
    return spans


_CJK_RUN_RE = re.compile(f"[{CJK}]+")


def cjk_bigrams(text: str) -> set[str]:
    """Character bigrams of the CJK runs in ``text``."""
    out: set[str] = set()
    for run in _CJK_RUN_RE.findall(text):
        out.update(run[i:i + 2] for i in range(len(run) - 1))
    return out


def approx_token_count(text: str) -> int:
    """Rough count when no tokenizer is at hand: one per CJK character, one per
    other word or punctuation mark."""
    return len(_CJK_RE.findall(text)) + len(re.findall(r"[A-Za-z0-9]+|[^\sA-Za-z0-9" + CJK + "]", text))
