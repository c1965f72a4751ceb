"""The one-click runner: an eval set and a system under test in, a stored run out.

A *system* is any callable ``(EvalCase) -> SystemOutput``. ``ServicesSystem``
is the real one: a case without ``index`` is plain chat through the engine, a
case with ``index`` goes through ``services.rag.answer``. Tests pass fakes.

Everything that can be checked is checked before the run row is written (the
set's format, its indexes, the prompt pattern), so bad input never leaves a
run behind. Errors inside one case are recorded on that case and the run goes
on; Ctrl-C stores the run as ``incomplete``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable, Protocol

from llmspace.engine.base import GenerationParams
from llmspace.errors import ConfigError, LLMSpaceError
from llmspace.evals.assertions import check_all
from llmspace.evals.cases import EvalCase, EvalSet
from llmspace.evals.config import EvalConfig
from llmspace.evals.metrics import compute_metrics
from llmspace.evals.results import CaseResult, SourceRef, SystemOutput, from_answer
from llmspace.evals.store import RunRecord, RunStore

Progress = Callable[[int, int, CaseResult], None]


class System(Protocol):
    def __call__(self, case: EvalCase) -> SystemOutput: ...


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the run is stored as ``incomplete``. A KeyboardInterrupt,
    so ``except Exception`` never swallows it."""

    def __init__(self, run_id: str, done: int, total: int):
        super().__init__(f"interrupted after {done}/{total} cases; run {run_id} stored as incomplete")
        self.run_id, self.done, self.total = run_id, done, total


def git_revision(start: Path | None = None) -> str | None:
    """``<sha>`` or ``<sha>-dirty`` of the checkout holding llmspace; None outside git."""
    where = start or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def known_indexes(services) -> set[str]:
    """Index names a case may use: those built, plus the bundled corpus (built on first use)."""
    from llmspace.rag.index import list_indexes

    names = {i["name"] for i in list_indexes(services.settings.indexes_dir)}
    if services.settings.index_bundled_corpus:
        names.add("roadmap")
    return names


def rag_service(services):
    """``services.rag``, or a ``RagService`` of our own where Services has no such property yet."""
    rag = getattr(services, "rag", None)
    if rag is None:
        from llmspace.rag.service import RagService

        rag = RagService(services)
    return rag


def ensure_bundled(services, rag, names: set[str], say: Callable[[str], None] | None = None) -> None:
    """Build the bundled roadmap index if a case needs it and it is missing or
    outdated (the app does this on start; a fresh `llmspace eval run` must too)."""
    if not services.settings.index_bundled_corpus:
        return
    from types import SimpleNamespace

    from llmspace.rag.bundled import BUNDLED_INDEX, bundled_status, ensure_bundled_index

    if BUNDLED_INDEX not in names or bundled_status(services.settings) == "current":
        return
    if say:
        say(f"building the bundled {BUNDLED_INDEX!r} index (once; re-embeds only what changed)...")
    ensure_bundled_index(SimpleNamespace(settings=services.settings, rag=rag))


class ServicesSystem:
    """Answers cases with the real engine and RAG of ``services``."""

    def __init__(self, services, *, max_tokens: int | None = None, index: str | None = None,
                 pattern: str | None = None, rag_mode: str = "auto"):
        self.services = services
        self.index_override = index
        self.pattern = pattern
        self.rag_mode = rag_mode  # RAG answer mode: auto | generate | extractive
        self.max_tokens = max_tokens  # None: each path's own default, as served
        self.params = GenerationParams(max_new_tokens=max_tokens or services.settings.default_max_tokens)
        self._rag = None
        if pattern is not None:
            self._pattern_fn = _load_pattern(pattern)

    @property
    def rag(self):
        if self._rag is None:
            self._rag = rag_service(self.services)
        return self._rag

    def describe(self) -> dict:
        from llmspace.rag.answer import AnswerParams

        s = self.services.settings
        remote = s.backend == "remote"  # the model that answers is the remote's, at that URL
        return {"model": self.services.engine.model_id if remote else s.chat_model, "backend": s.backend,
                **({"remote_base_url": s.remote_base_url} if remote else {}), "index_override": self.index_override,
                "pattern": self.pattern, "max_tokens": self.max_tokens, "temperature": 0.0,
                "chat_max_tokens": self.params.max_new_tokens,
                "rag_max_tokens": self.max_tokens or AnswerParams().max_new_tokens, "rag_mode": self.rag_mode}

    def index_for(self, case: EvalCase) -> str | None:
        return (self.index_override or case.index) if case.index else None

    def __call__(self, case: EvalCase) -> SystemOutput:
        index = self.index_for(case)
        if index:
            kw = {"max_tokens": self.max_tokens} if self.max_tokens else {}
            # offline: no A/B arm, not recorded as served traffic
            answer = self.rag.answer(case.prompt_text, index, mode=self.rag_mode, online=False, **kw)
            return from_answer(answer)
        from llmspace.chat import chat

        msgs = list(case.messages) if case.messages else [{"role": "user", "content": case.question}]
        if self.pattern is not None:
            msgs = self._pattern_fn(msgs)
        c = chat(self.services, msgs, self.params, online=False)
        return SystemOutput(text=c.text, prompt_tokens=c.usage.prompt_tokens,
                            completion_tokens=c.usage.completion_tokens, ttft_s=c.timings.get("ttft_s"),
                            total_s=c.timings.get("total_s"), mode="chat", model=c.model)


def _load_pattern(name: str):
    """A prompt pattern from ``llmspace.prompts`` as ``messages -> messages``."""
    try:
        from llmspace import prompts
    except ImportError:
        raise ConfigError("Prompt patterns are not available in this build (no llmspace.prompts); "
                          "run without --pattern.", param="pattern") from None
    apply = getattr(prompts, "apply_pattern", None)
    names = getattr(prompts, "list_patterns", lambda: [])()
    if apply is None:
        raise ConfigError("llmspace.prompts has no apply_pattern(); run without --pattern.", param="pattern")
    if names and name not in names:
        raise ConfigError(f"Unknown prompt pattern {name!r}; known: {', '.join(names)}.", param="pattern")
    return lambda msgs: apply(name, msgs)


def evaluate_case(case: EvalCase, system: System, config: EvalConfig, judge=None) -> CaseResult:
    """Run one case, never raising for the case's own failure (recorded in ``error``)."""
    r = CaseResult(case_id=case.id, kind=case.kind, question=case.prompt_text, tags=list(case.tags),
                   gold_sources=list(case.gold_sources))
    t0 = time.perf_counter()
    try:
        out = system(case)
    except LLMSpaceError as exc:
        r.error = f"{type(exc).__name__}: {exc.message}"
        r.total_s = time.perf_counter() - t0
        return r
    except Exception as exc:  # a bug in the system under test must not end the run
        r.error = f"{type(exc).__name__}: {exc}"
        r.total_s = time.perf_counter() - t0
        return r
    wall = time.perf_counter() - t0
    r.output, r.mode = out.text, out.mode
    r.retrieved = [_ref(s) for s in out.retrieved]
    r.cited = [_ref(s) for s in out.cited]
    r.prompt_tokens, r.completion_tokens = out.prompt_tokens, out.completion_tokens
    r.supported = out.supported
    r.ttft_s = out.ttft_s  # as the system measures it
    r.total_s = wall  # end to end, as the user waits: retrieval + generation + bookkeeping
    r.cost_usd = config.case_cost(out.prompt_tokens, out.completion_tokens, wall)
    r.assertions = check_all(case, out)
    r.passed = all(a.passed for a in r.assertions)
    if judge is not None:
        r.judge = judge(case, out)
    return r


def _ref(s: SourceRef) -> dict:
    return {"chunk_id": s.chunk_id, "source": s.source, "n": s.n, "valid": s.valid, "origin": s.origin}


def run_eval(eval_set: EvalSet, system: System, store: RunStore, *, config: EvalConfig | None = None,
             snapshot: dict | None = None, progress: Progress | None = None, judge=None,
             git_rev: str | None = None) -> RunRecord:
    """Run every case, store the run, return it (``status`` complete).

    Raises ``EvalInterrupted`` on Ctrl-C after storing the partial run.
    """
    config = config or EvalConfig()
    snap = dict(snapshot or {})
    snap["cost"] = {**config.model_dump(), "mode": config.cost_mode, "description": config.describe_cost()}
    snap["judge"] = getattr(judge, "describe", lambda: None)()
    snap["cases"] = [c.id for c in eval_set.cases]
    with store.session():
        return _run(eval_set, system, store, config, snap, progress, judge, git_rev)


def _run(eval_set: EvalSet, system: System, store: RunStore, config: EvalConfig, snap: dict,
         progress: Progress | None, judge, git_rev: str | None) -> RunRecord:
    run_id = store.start(set_name=eval_set.name, set_path=eval_set.path, sha256=eval_set.sha256,
                         git_rev=git_rev if git_rev is not None else git_revision(), n_cases=len(eval_set.cases),
                         config=snap)
    results: list[CaseResult] = []
    try:
        for i, case in enumerate(eval_set.cases):
            r = evaluate_case(case, system, config, judge)
            store.add_result(run_id, i, r)
            results.append(r)
            if progress:
                progress(i + 1, len(eval_set.cases), r)
    except KeyboardInterrupt:
        store.finish(run_id, "incomplete", compute_metrics(results) if results else None,
                     note=f"interrupted (Ctrl-C) after {len(results)}/{len(eval_set.cases)} cases")
        raise EvalInterrupted(run_id, len(results), len(eval_set.cases)) from None
    except BaseException as exc:
        store.finish(run_id, "failed", compute_metrics(results) if results else None,
                     note=f"{type(exc).__name__}: {exc}")
        raise
    store.finish(run_id, "complete", compute_metrics(results))
    return store.get(run_id)
