"""Grounded answers: retrieve, fence the sources, generate with ``[n]``
citations, then check the answer after generation.

``stream_answer`` yields the generated text piece by piece (``str``) and last
the final ``Answer``; ``answer`` runs it to the end. The final text can differ
from the streamed pieces: invalid citations are flagged, a missing citation is
attached, or the answer falls back to extractive — ``Answer.mode`` and
``Answer.notes`` say which.

Modes: ``auto`` (generate when the chat model handles the question's language,
else extractive), ``generate``, ``extractive``. Whatever the mode, when no
retrieved chunk is relevant the answer is "I don't know" (mode ``no_answer``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from llmspace.engine.base import GenerationParams, Message, Usage
from llmspace.errors import ContextLengthError, ValidationError
from llmspace.rag.citations import best_support, check_citations, strip_markers
from llmspace.rag.extractive import extractive_answer
from llmspace.rag.retrieve import RetrievalParams, Retriever, check_query, relevant
from llmspace.rag.text import analyze, detect_lang
from llmspace.rag.types import Answer, SearchHit

MODES = ("auto", "generate", "extractive")
PROMPTS_FILE = Path(__file__).resolve().parent.parent / "data" / "prompts" / "rag.yaml"
# Substrings of chat-model ids known to handle Chinese (SmolLM2 is English-only).
MULTILINGUAL_MARKERS = ("qwen", "glm", "deepseek", "yi-", "baichuan", "internlm", "minicpm", "llama-3", "gemma",
                        "mistral-nemo", "aya", "bloom", "multilingual", "m3")
LANG_NAMES = {"en": "English", "zh": "Chinese"}
MIN_SUPPORT = 0.3  # share of the answer's terms a source must hold to be attached as its citation


@dataclass
class AnswerParams:
    mode: str = "auto"
    max_new_tokens: int = 160
    max_prompt_tokens: int = 1536  # sources are trimmed to fit this (and the model's context window)
    temperature: float = 0.0

    def validate(self) -> "AnswerParams":
        if self.mode not in MODES:
            raise ValidationError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}.", param="mode")
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


def handles_language(model_id: str, lang: str) -> bool:
    return lang == "en" or any(m in model_id.lower() for m in MULTILINGUAL_MARKERS)


def fence(text: str) -> str:
    """Neutralise anything in untrusted text that could close or open a source block."""
    return text.replace("<source", "‹source").replace("</source", "‹/source")


def render_messages(question: str, sources: list[tuple[SearchHit, str]]) -> list[Message]:
    p = prompts()
    blocks = "\n\n".join(p["source"].format(n=i, title=fence(h.chunk.heading or h.chunk.title).replace('"', "'"),
                                            text=fence(text)) for i, (h, text) in enumerate(sources, start=1))
    return [Message("system", p["system"].strip()),
            Message("user", p["user"].format(sources=blocks, question=fence(question)))]


def fit_sources(question: str, hits: list[SearchHit], engine, params: AnswerParams
                ) -> tuple[list[Message], list[SearchHit], list[str]]:
    """The prompt with as many sources as fit the token budget; trimmed sources
    are left out (or the last one shortened) and a note says so."""
    count = engine.count_prompt_tokens  # loads the engine, so context_window is known after this call
    base = count(render_messages(question, []))
    budget = min(params.max_prompt_tokens, engine.context_window - params.max_new_tokens - 8)
    if base > budget:
        raise ContextLengthError(
            f"The question takes {base} tokens of prompt; the budget is {budget} (context window "
            f"{engine.context_window}, {params.max_new_tokens} reserved for the answer). Shorten the question.",
            param="query")
    used: list[tuple[SearchHit, str]] = []
    shortened = 0
    for hit in hits:
        trial = used + [(hit, hit.chunk.text)]
        n = count(render_messages(question, trial))
        if n <= budget:
            used = trial
            continue
        # shorten this one to what is left (chars in proportion to tokens), then stop
        whole = n - count(render_messages(question, used))
        room = budget - (n - whole)
        if room >= 48:
            text = hit.chunk.text[:max(1, int(len(hit.chunk.text) * room / whole) - 8)]
            while text and count(render_messages(question, used + [(hit, text + " …")])) > budget:
                text = text[:int(len(text) * 0.9)]
            if text:
                used.append((hit, text + " …"))
                shortened = 1
        break
    notes = []
    if len(used) < len(hits) or shortened:
        notes.append(prompts()["notes"]["trimmed"].format(dropped=len(hits) - len(used), total=len(hits),
                                                         shortened=shortened, budget=budget))
    return render_messages(question, used), [h for h, _ in used], notes


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
    notes_t = prompts()["notes"]
    hits = retriever.search(question, rp)
    good = relevant(hits, question, rp)
    same_lang = [h for h in good if h.chunk.lang == lang]
    if same_lang:  # a bilingual index answers in the question's language when it has sources in it
        good = same_lang
    timings = {"retrieve_s": round(time.perf_counter() - t0, 4)}
    if not good:
        best = max((h.scores.get("coverage", 0.0) for h in hits), default=0.0)
        text = prompts()["no_answer"][lang if lang in ("en", "zh") else "en"].format(index=index_name)
        yield text
        timings["total_s"] = round(time.perf_counter() - t0, 4)
        yield Answer(question, text, [], [], mode="no_answer", timings=timings,
                     notes=[notes_t["no_answer"].format(coverage=best)])
        return

    mode, notes = p.mode, []
    model_id = getattr(engine, "model_id", "")
    if mode == "auto":
        mode = "generate" if engine is not None and handles_language(model_id, lang) else "extractive"
        if mode == "extractive":
            notes.append(notes_t["extractive_language"].format(model=model_id or "(none)",
                                                               lang=LANG_NAMES.get(lang, lang)))
    elif mode == "extractive":
        notes.append(notes_t["extractive_requested"])
    if mode == "generate" and engine is None:
        raise ValidationError("mode=generate needs a chat model; use mode=extractive.", param="mode")

    def extractive(sources: list[SearchHit], extra: list[str], usage: Usage | None = None) -> Answer:
        text, cites = extractive_answer(question, sources, retriever.index.coverage, retriever.embedder)
        timings["total_s"] = round(time.perf_counter() - t0, 4)
        return Answer(question, text, cites, sources, mode="extractive", usage=usage or Usage(), timings=timings,
                      notes=notes + extra)

    if mode == "extractive":
        ans = extractive(good, [])
        yield ans.text
        yield ans
        return

    messages, sources, trim_notes = fit_sources(question, good, engine, p)
    notes += trim_notes
    gen = GenerationParams(max_new_tokens=p.max_new_tokens, temperature=p.temperature)
    parts: list[str] = []
    last = None
    for delta in (generate or engine.stream)(messages, gen):
        if delta.text:
            if not parts:
                timings["ttft_s"] = round(time.perf_counter() - t0, 4)
            parts.append(delta.text)
            yield delta.text
        last = delta
    usage = (last.usage if last is not None else None) or Usage()
    raw = "".join(parts).strip()
    if not raw:
        yield extractive(sources, [notes_t["empty"]], usage)
        return
    text, citations, invalid = check_citations(raw, sources)
    # Grounding check: an answer that says nothing, or whose words the sources
    # do not hold, is replaced by the extractive one (small models do both).
    content = strip_markers(raw)
    n, share = best_support(content, sources)
    if len(analyze(content)) < 2 or share < MIN_SUPPORT:
        yield extractive(sources, [notes_t["fallback"]], usage)
        return
    if invalid:
        notes.append(notes_t["invalid"].format(ids=", ".join(f"[{n}]" for n in invalid), count=len(sources)))
    if not any(c.valid for c in citations):
        text = f"{text} [{n}]"
        text, citations, invalid = check_citations(text, sources)
        notes.append(notes_t["attached"].format(n=n))
    timings["total_s"] = round(time.perf_counter() - t0, 4)
    yield Answer(question, text, citations, sources, invalid_citations=invalid, mode="generate", usage=usage,
                 timings=timings, notes=notes)


def answer(question: str, retriever: Retriever, engine=None, **kwargs) -> Answer:
    """``stream_answer`` run to the end."""
    final = None
    for item in stream_answer(question, retriever, engine, **kwargs):
        final = item
    assert isinstance(final, Answer)
    return final
