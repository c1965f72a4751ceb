"""Evaluation: JSONL eval sets, a one-click runner, citation/latency/cost
metrics, run history and diffs, HTML reports, human feedback and online A/B.

Library first — the CLI (``llmspace eval|feedback|ab``), the API
(``serve/eval_routes.py``) and the Eval tab call these::

    from llmspace.evals import load_eval_set, run_default
    run = run_default(services)              # the bundled starter set
    print(run.metrics["pass_rate"])

Importing this package is cheap; the modules import what they need.
"""

from __future__ import annotations

from llmspace.evals.cases import EvalCase, EvalSet, EvalSetError, bundled_sets, load_eval_set  # noqa: F401
from llmspace.evals.config import EvalConfig  # noqa: F401
from llmspace.evals.results import CaseResult, SourceRef, SystemOutput  # noqa: F401


def run_default(services, set_name: str | None = None, **kwargs):
    """Run a set (default: the starter set) with the real services; see ``api.run_set``."""
    from llmspace.evals.api import run_set

    return run_set(services, set_name, **kwargs)
