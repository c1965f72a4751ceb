"""Grounded answers: retrieve, pick the sentences that answer, generate with
``[n]`` citations, then check the answer's support after generation.

``stream_answer`` yields the generated text piece by piece (``str``) and last
the final ``Answer``; ``answer`` runs it to the end. The final text can differ
from the streamed pieces: invalid citations are flagged, or an answer that
fails the support check (``rag.support``) is replaced by the extractive one —
``Answer.mode``, ``Answer.support`` and ``Answer.notes`` say which and why.

Every citation says who made it (``Citation.origin``): ``model`` (the model
wrote ``[n]``), ``attached`` (the model cited nothing and llmspace attached the
source its support check found; shown and counted apart) or ``extractive``
(a quoted sentence and where it was quoted from).

Modes: ``auto`` (generate when the chat model handles the question's language
and is not measured to answer worse than quoting — ``ModelSpec.rag_auto``; the
packaged SmolLM2-135M is — else extractive), ``generate``, ``extractive``.
Whatever the mode, when no retrieved passage covers what the question asks
(``evidence.answerable``) the answer is "I don't know" (mode ``no_answer``)
with the reason in the notes.

``AnswerParams.context`` is what the model is given: ``sentences`` (default:
per source only its sentences that score best against the question — what
SmolLM2-135M answers and cites best from, measured by
``benchmarks/bench_answers.py``) or ``chunks`` (whole chunks, for larger models).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from llmspace.engine.base import GenerationParams, Message, Usage
from llmspace.errors import ContextLengthError, ValidationError
from llmspace.rag.citations import check_citations, citation_for
from llmspace.rag.evidence import Sentence, answerable, score_sentences
from llmspace.rag.extractive import extractive_answer
from llmspace.rag.retrieve import RetrievalParams, Retriever, check_query, relevant
from llmspace.rag.support import check_support
from llmspace.rag.text import detect_lang
from llmspace.rag.types import Answer, SearchHit

MODES = ("auto", "generate", "extractive")
CONTEXTS = ("sentences", "chunks")
PROMPTS_FILE = Path(__file__).resolve().parent.parent / "data" / "prompts" / "rag.yaml"
# Substrings of chat-model ids known to handle Chinese (SmolLM2 is English-only).
MULTILINGUAL_MARKERS = ("qwen", "glm", "deepseek", "yi-", "baichuan", "internlm", "minicpm", "llama-3", "gemma",
                        "mistral-nemo", "aya", "bloom", "multilingual", "m3")
LANG_NAMES = {"en": "English", "zh": "Chinese"}
SENTENCES_PER_PROMPT = 3  # the "sentences" context: the best 3 sentences, grouped by their source


@dataclass
class AnswerParams:
    mode: str = "auto"
    max_new_tokens: int = 160
    max_prompt_tokens: int = 1536  # sources are trimmed to fit this (and the model's context window)
    temperature: float = 0.0
    context: str = "sentences"  # what the model is given: "sentences" or "chunks"

    def validate(self) -> "AnswerParams":
        if self.mode not in MODES:
            raise ValidationError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}.", param="mode")
        if self.context not in CONTEXTS:
            raise ValidationError(f"context must be one of {', '.join(CONTEXTS)}; got {self.context!r}.",
                                  param="context")
        if not 1 <= self.max_new_tokens <= 2048:
            raise ValidationError(f"max_tokens must be between 1 and 2048; got {self.max_new_tokens}.",
                                  param="max_tokens")
        if self.max_prompt_tokens < 64:
            raise ValidationError("max_prompt_tokens must be at least 64.", param="max_prompt_tokens")
        return self


@lru_cache(maxsize=1)
def prompts() -> dict:
    import yaml

    return yaml.safe_load(PROMPTS_FILE.read_text(encoding="utf-8"))


def auto_mode(model_id: str) -> str:
    """What "auto" does for a language the model handles: the registry says, for models measured."""
    from llmspace import models

    spec = models.lookup(model_id) if model_id else None
    return spec.rag_auto if spec is not None else "generate"


def handles_language(model_id: str, lang: str) -> bool:
    return lang == "en" or any(m in model_id.lower() for m in MULTILINGUAL_MARKERS)


def fence(text: str) -> str:
    """Neutralise anything in untrusted text that could close or open a source block."""
    return text.replace("<source", "‹source").replace("</source", "‹/source")


def render_messages(question: str, sources: list[tuple[SearchHit, str]], user_key: str = "user") -> list[Message]:
    """``user_key`` "user": whole chunks in fenced ``<source>`` blocks; "user_sentences": one
    ``[n] text`` line per source (newlines and any leading "[k]" in the text neutralised, so a
    source cannot fake another source's number)."""
    p = prompts()
    if user_key == "user_sentences":
        blocks = "\n".join(p["source_line"].format(n=i, text=_one_line(text))
                           for i, (h, text) in enumerate(sources, start=1))
        system = p["system_sentences"]
    else:
        blocks = "\n\n".join(p["source"].format(n=i, title=fence(h.chunk.heading or h.chunk.title).replace('"', "'"),
                                                text=fence(text)) for i, (h, text) in enumerate(sources, start=1))
        system = p["system"]
    return [Message("system", system.strip()),
            Message("user", p[user_key].format(sources=blocks, question=fence(question)))]


def _one_line(text: str) -> str:
    import re

    return re.sub(r"^\s*\[(\d+)\]", r"(\1)", " ".join(fence(text).split()))


def sentence_sources(hits: list[SearchHit], ranked: list[Sentence], k: int = SENTENCES_PER_PROMPT
                     ) -> list[tuple[SearchHit, str]]:
    """The ``k`` best sentences grouped by their chunk, best chunk first; each chunk's sentences in
    document order. Numbering is per chunk, so ``[n]`` still names a retrieved chunk."""
    top = ranked[:k]
    order = list(dict.fromkeys(s.n for s in top))
    return [(hits[n - 1], " ".join(s.text for s in sorted((s for s in top if s.n == n), key=lambda s: s.start)))
            for n in order]


def fit_sources(question: str, candidates: list[tuple[SearchHit, str]], engine, params: AnswerParams,
                user_key: str = "user") -> tuple[list[Message], list[tuple[SearchHit, str]], list[str]]:
    """The prompt with as many sources as fit the token budget; trimmed sources
    are left out (or the last one shortened) and a note says so."""
    count = engine.count_prompt_tokens  # loads the engine, so context_window is known after this call

    def render(srcs):
        return render_messages(question, srcs, user_key)

    base = count(render([]))
    budget = min(params.max_prompt_tokens, engine.context_window - params.max_new_tokens - 8)
    if base > budget:
        raise ContextLengthError(
            f"The question takes {base} tokens of prompt; the budget is {budget} (context window "
            f"{engine.context_window}, {params.max_new_tokens} reserved for the answer). Shorten the question.",
            param="query")
    used: list[tuple[SearchHit, str]] = []
    shortened = 0
    for hit, full in candidates:
        trial = used + [(hit, full)]
        n = count(render(trial))
        if n <= budget:
            used = trial
            continue
        # shorten this one to what is left (chars in proportion to tokens), then stop
        whole = n - count(render(used))
        room = budget - (n - whole)
        if room >= 48:
            text = full[:max(1, int(len(full) * room / whole) - 8)]
            while text and count(render(used + [(hit, text + " …")])) > budget:
                text = text[:int(len(text) * 0.9)]
            if text:
                used.append((hit, text + " …"))
                shortened = 1
        break
    notes = []
    if len(used) < len(candidates) or shortened:
        notes.append(prompts()["notes"]["trimmed"].format(dropped=len(candidates) - len(used),
                                                         total=len(candidates), shortened=shortened, budget=budget))
    return render(used), used, notes


def stream_answer(question: str, retriever: Retriever, engine=None, *, index_name: str = "",
                  retrieval: RetrievalParams | None = None, params: AnswerParams | None = None,
                  generate=None) -> Iterator[str | Answer]:
    """Text pieces (``str``) as they are generated, then the final ``Answer``.
    ``generate(messages, params)`` streams deltas (default ``engine.stream``;
    ``RagService`` passes one that records metrics)."""
    t0 = time.perf_counter()
    p = (params or AnswerParams()).validate()
    rp = retrieval or RetrievalParams()
    question = check_query(question)
    lang = detect_lang(question)
    key = lang if lang in ("en", "zh") else "en"
    notes_t = prompts()["notes"]
    hits = retriever.search(question, rp)
    good = relevant(hits, question, rp)
    same_lang = [h for h in good if h.chunk.lang == lang]
    if same_lang:  # a bilingual index answers in the question's language when it has sources in it
        good = same_lang
    timings = {"retrieve_s": round(time.perf_counter() - t0, 4)}

    def no_answer(template: str, note: str, sources: list[SearchHit]) -> Answer:
        timings["total_s"] = round(time.perf_counter() - t0, 4)
        return Answer(question, prompts()[template][key].format(index=index_name), [], sources, mode="no_answer",
                      timings=timings, notes=[note])

    if not good:
        best = max((h.scores.get("coverage", 0.0) for h in hits), default=0.0)
        ans = no_answer("no_answer", notes_t["no_answer"].format(coverage=best), [])
        yield ans.text
        yield ans
        return
    ranked = score_sentences(question, good, retriever.index.coverage, retriever.embedder)
    ok, why = answerable(question, ranked)
    timings["evidence_s"] = round(time.perf_counter() - t0 - timings["retrieve_s"], 4)
    if not ok:
        ans = no_answer("dont_know", notes_t["not_answerable"].format(reason=why), good)
        yield ans.text
        yield ans
        return

    mode, notes = p.mode, []
    model_id = getattr(engine, "model_id", "")
    if mode == "auto":
        mode = "generate" if engine is not None and handles_language(model_id, lang) else "extractive"
        if mode == "extractive":
            notes.append(notes_t["extractive_language"].format(model=model_id or "(none)",
                                                               lang=LANG_NAMES.get(lang, lang)))
        elif auto_mode(model_id) == "extractive":
            mode = "extractive"
            notes.append(notes_t["extractive_measured"].format(model=model_id))
    elif mode == "extractive":
        notes.append(notes_t["extractive_requested"])
    if mode == "generate" and engine is None:
        raise ValidationError("mode=generate needs a chat model; use mode=extractive.", param="mode")

    def extractive(extra: list[str], usage: Usage | None = None, support: dict | None = None) -> Answer:
        text, cites = extractive_answer(question, ranked, good)
        timings["total_s"] = round(time.perf_counter() - t0, 4)
        return Answer(question, text, cites, good, mode="extractive", usage=usage or Usage(), timings=timings,
                      notes=notes + extra, support=support)

    if mode == "extractive":
        ans = extractive([])
        yield ans.text
        yield ans
        return

    if p.context == "sentences":
        candidates, user_key = sentence_sources(good, ranked), "user_sentences"
    else:
        candidates, user_key = [(h, h.chunk.text) for h in good], "user"
    messages, given, trim_notes = fit_sources(question, candidates, engine, p, user_key)
    notes += trim_notes
    sources = [h for h, _ in given]
    gen = GenerationParams(max_new_tokens=p.max_new_tokens, temperature=p.temperature)
    parts: list[str] = []
    last = None
    for delta in (generate or engine.stream)(messages, gen):
        if delta.waiting:  # queued behind other requests: an empty piece lets a stream keep its connection
            yield ""
            continue
        if delta.text:
            if not parts:
                timings["ttft_s"] = round(time.perf_counter() - t0, 4)
            parts.append(delta.text)
            yield delta.text
        last = delta
    usage = (last.usage if last is not None else None) or Usage()
    raw = "".join(parts).strip()
    if not raw:
        yield extractive([notes_t["empty"]], usage)
        return
    text, citations, invalid = check_citations(raw, sources)
    # the support check runs against what the model cited; an answer that cites nothing is checked
    # against every given source, and a source that supports it is attached, labelled as llmspace's
    by_chunk = {h.chunk.id: n for n, h in enumerate(sources, start=1)}
    renumber = {g: by_chunk.get(h.chunk.id) for g, h in enumerate(good, start=1)}
    given_sents = [s for s in ranked if renumber.get(s.n)]
    cited_n = {c.n for c in citations if c.valid}
    pool = cited_n or set(range(1, len(sources) + 1))
    cited_sents = [s for s in given_sents if renumber[s.n] in pool]
    verdict = check_support(question, text, cited_sents, ranked, [t for n, (_, t) in enumerate(given, 1) if n in pool])
    support = {**verdict.to_dict(), "generated": text}  # what the model wrote, kept when it is not shown
    if support["evidence"] is not None:
        support["evidence"]["n"] = renumber.get(support["evidence"]["n"])
    if not verdict.supported:
        yield extractive([notes_t["fallback"].format(reasons="; ".join(verdict.reasons))], usage, support)
        return
    if invalid:
        notes.append(notes_t["invalid"].format(ids=", ".join(f"[{n}]" for n in invalid), count=len(sources)))
    if not cited_n and verdict.evidence is not None:
        n = renumber[verdict.evidence.n]
        attached = citation_for(n, sources[n - 1])
        attached.origin = "attached"
        citations = [attached] + citations
        notes.append(notes_t["attached"].format(n=n))
    timings["total_s"] = round(time.perf_counter() - t0, 4)
    yield Answer(question, text, citations, sources, invalid_citations=invalid, mode="generate", usage=usage,
                 timings=timings, notes=notes, support=support)


def answer(question: str, retriever: Retriever, engine=None, **kwargs) -> Answer:
    """``stream_answer`` run to the end."""
    final = None
    for item in stream_answer(question, retriever, engine, **kwargs):
        final = item
    assert isinstance(final, Answer)
    return final
