"""Optional LLM-as-judge: a faithfulness score, off by default.

The judge model reads the sources the answer was given and the answer, and
grades 1-5 how well the sources support it; we map that to [0, 1]. This is a
model's opinion, not ground truth: reports label it "LLM-as-judge" and the
pass/fail of a case never depends on it. A 135M model is a poor judge; point
``--judge-model`` (or ``eval_judge_model``) at a stronger one where you can.
"""

from __future__ import annotations

import re

from llmspace.engine.base import GenerationParams, Message, complete
from llmspace.evals.cases import EvalCase
from llmspace.evals.results import SystemOutput

PROMPT = """You grade answers for faithfulness to their sources.

Sources:
{sources}

Question: {question}
Answer: {answer}

Is every claim in the answer supported by the sources? Reply with one digit from 1 (not supported at all) \
to 5 (fully supported), then a short reason.
Score:"""


class Judge:
    def __init__(self, services, model: str | None = None, max_source_chars: int = 3000):
        self.services = services
        self.model = model or services.settings.chat_model
        self.max_source_chars = max_source_chars
        self._engine = None

    def describe(self) -> dict:
        return {"kind": "llm-as-judge faithfulness (1-5 mapped to 0-1)", "model": self.model}

    @property
    def engine(self):
        if self._engine is None:
            if self.model == self.services.settings.chat_model:
                self._engine = self.services.engine
            else:
                from llmspace.engine import create_engine

                self._engine = create_engine(self.services.settings, model=self.model)
        return self._engine

    def sources_text(self, case: EvalCase, out: SystemOutput) -> str:
        """The texts the answer was given (RAG) or the case's reference answer (chat)."""
        texts = []
        for i, t in enumerate(out.source_texts, 1):
            texts.append(f"[{i}] {t}")
        if not texts and case.reference:
            texts.append(f"Reference answer: {case.reference}")
        return "\n".join(texts)[: self.max_source_chars] or "(no sources)"

    def __call__(self, case: EvalCase, out: SystemOutput) -> dict:
        prompt = PROMPT.format(sources=self.sources_text(case, out), question=case.prompt_text, answer=out.text)
        try:
            c = complete(self.engine, [Message("user", prompt)], GenerationParams(max_new_tokens=24))
        except Exception as exc:  # the judge failing must not fail the case
            return {"model": self.model, "faithfulness": None, "raw": f"judge error: {exc}"}
        return {"model": self.model, "faithfulness": parse_score(c.text), "raw": c.text.strip()[:200]}


def parse_score(text: str) -> float | None:
    """First digit 1-5 in the reply, mapped to [0, 1]; None if there is none."""
    m = re.search(r"[1-5]", text)
    return None if m is None else (int(m.group(0)) - 1) / 4
