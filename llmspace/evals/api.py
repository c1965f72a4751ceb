"""The calls the shells share: run a set with the real services, write its
reports, compare runs. The CLI, the API routes and the Eval tab use only these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from llmspace.errors import NotFoundError
from llmspace.evals.cases import EvalSetError, load_eval_set
from llmspace.evals.config import EvalConfig
from llmspace.evals.report import reports_dir, write_reports
from llmspace.evals.runner import Progress, ServicesSystem, ensure_bundled, known_indexes, run_eval
from llmspace.evals.store import RunRecord, RunStore


@dataclass
class RunOutcome:
    run: RunRecord
    reports: dict[str, Path]


def store_for(services) -> RunStore:
    return RunStore(services.settings.db_path)


def prepare_run(services, set_ref: str | None = None, *, index: str | None = None, pattern: str | None = None,
                tags: list[str] | None = None, ids: list[str] | None = None, limit: int | None = None,
                max_tokens: int | None = None, rag_mode: str = "auto", say: Callable[[str], None] | None = None):
    """Everything that can fail before a run is stored, and the bundled index
    if a case needs it: returns (eval_set, system)."""
    known = known_indexes(services)
    eval_set = load_eval_set(set_ref, known_indexes=None if index else known)
    if index and index not in known:
        raise EvalSetError(f"--index {index!r} does not exist (known: {', '.join(sorted(known)) or 'none'}). "
                           "Build it with `llmspace index build PATH --name NAME` or fix the name.", file=eval_set.path)
    if tags or ids or limit is not None:
        eval_set = eval_set.select(tags=tags, ids=ids, limit=limit)
    if max_tokens is not None and not 1 <= max_tokens <= services.settings.max_tokens_limit:
        from llmspace.errors import ValidationError

        raise ValidationError(f"--max-tokens must be 1-{services.settings.max_tokens_limit}; got {max_tokens}.",
                              param="max_tokens")
    if rag_mode not in ("auto", "generate", "extractive"):
        from llmspace.errors import ValidationError

        raise ValidationError(f"--rag-mode must be auto, generate or extractive; got {rag_mode!r}.", param="rag_mode")
    system = ServicesSystem(services, max_tokens=max_tokens, index=index, pattern=pattern, rag_mode=rag_mode)
    needed = {system.index_for(c) for c in eval_set.cases} - {None}
    if needed:
        ensure_bundled(services, system.rag, needed, say)
    return eval_set, system


def run_set(services, set_ref: str | None = None, *, index: str | None = None, pattern: str | None = None,
            tags: list[str] | None = None, ids: list[str] | None = None, limit: int | None = None,
            max_tokens: int | None = None, rag_mode: str = "auto", judge: bool = False,
            judge_model: str | None = None,
            eval_config: EvalConfig | None = None, progress: Progress | None = None,
            report_dir: Path | None = None, say: Callable[[str], None] | None = None) -> RunOutcome:
    eval_set, system = prepare_run(services, set_ref, index=index, pattern=pattern, tags=tags, ids=ids,
                                   limit=limit, max_tokens=max_tokens, rag_mode=rag_mode, say=say)
    cfg = eval_config or EvalConfig.from_settings(services.settings, judge_model=judge_model)
    judge_fn = None
    if judge:
        from llmspace.evals.judge import Judge

        judge_fn = Judge(services, model=judge_model or cfg.judge_model)
    snapshot = {"settings": services.settings.describe(), "system": system.describe(),
                "filters": {"tags": tags, "ids": ids, "limit": limit}}
    run = run_eval(eval_set, system, store_for(services), config=cfg, snapshot=snapshot, progress=progress,
                   judge=judge_fn)
    paths = write_reports(run, report_dir or reports_dir(services.settings.home, run.id))
    return RunOutcome(run, paths)


def report_paths(services, run: RunRecord, regenerate: bool = False) -> dict[str, Path]:
    """The run's report files, (re)written if missing or asked."""
    folder = reports_dir(services.settings.home, run.id)
    paths = {"json": folder / "report.json", "html": folder / "report.html"}
    if regenerate or not all(p.exists() for p in paths.values()):
        paths = write_reports(run, folder)
    return paths


def get_run(services, ref: str, with_results: bool = True) -> RunRecord:
    return store_for(services).get(ref, with_results=with_results)


def baseline_for_gate(services, ref: str) -> RunRecord:
    base = get_run(services, ref)
    if not base.complete:
        raise NotFoundError(f"Baseline run {base.id} is {base.status}, not complete; pick a complete run "
                            "(`llmspace eval ls`).", param="baseline")
    return base
