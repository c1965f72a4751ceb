"""Evaluation commands: ``eval`` (run, ls, show, diff, report, validate),
``feedback`` (ls, export) and ``ab`` (report, assign).

Exit codes: 0 ok, 1 an error (message on stderr), 3 a regression against
``--baseline`` with ``--fail-on-regression``, 130 interrupted (the run is
stored as incomplete).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

EXIT_REGRESSION = 3


def register(sub, common) -> None:
    _register_eval(sub, common)
    _register_feedback(sub, common)
    _register_ab(sub, common)


def _register_eval(sub, common) -> None:
    p = sub.add_parser("eval", help="offline evals: run a JSONL set, list/show/diff runs")
    es = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    es.required = True

    r = es.add_parser("run", parents=[common], help="run an eval set (default: the bundled starter set)")
    r.add_argument("set", nargs="?", help="bundled set name or path to a .jsonl file (default: starter)")
    r.add_argument("--index", help="answer RAG cases from this index instead of each case's own")
    # hidden until prompt patterns (llmspace.prompts) exist: today it can only fail, with that message
    r.add_argument("--pattern", help=argparse.SUPPRESS)
    r.add_argument("--tag", action="append", default=[], help="only cases with this tag (repeatable)")
    r.add_argument("--case", action="append", default=[], help="only this case id or glob (repeatable)")
    r.add_argument("--limit", type=int, help="only the first N (selected) cases")
    r.add_argument("--max-tokens", type=int, help="max new tokens per answer (default: the setting)")
    r.add_argument("--rag-mode", choices=["auto", "generate", "extractive"], default="auto",
                   help="RAG answer mode (auto: what the chat model is measured to do best; generate: the model's "
                        "own answers, checked against their sources)")
    r.add_argument("--judge", action="store_true", help="add an LLM-as-judge faithfulness score (off by default)")
    r.add_argument("--judge-model", help="model for --judge (default: the chat model)")
    g = r.add_argument_group("cost (default: hardware price per hour x measured time)")
    g.add_argument("--usd-per-hour", type=float, help="hardware price per hour")
    g.add_argument("--usd-per-1m-prompt", type=float, help="per-token price: USD per 1M prompt tokens")
    g.add_argument("--usd-per-1m-completion", type=float, help="per-token price: USD per 1M completion tokens")
    g = r.add_argument_group("regression gate (CI)")
    g.add_argument("--baseline", help="run id (or latest, latest~1) to compare with")
    g.add_argument("--fail-on-regression", action="store_true",
                   help=f"exit {EXIT_REGRESSION} if pass rate or citation rate drops below the baseline")
    g.add_argument("--tolerance", type=float, default=0.0, help="allowed drop, absolute (0.05 = 5 points)")
    r.add_argument("--out", help="folder for report.json and report.html (default: LLMSPACE_HOME/evals/RUN)")
    r.add_argument("--json", action="store_true", help="print the run's metrics as JSON")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(handler=cmd_run)

    r = es.add_parser("validate", parents=[common], help="check an eval set's format without running it")
    r.add_argument("set", nargs="?")
    r.set_defaults(handler=cmd_validate)

    r = es.add_parser("ls", parents=[common], help="list stored runs, newest first")
    r.add_argument("--limit", type=int, default=20)
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_ls)

    r = es.add_parser("show", parents=[common], help="a run's summary and its failing cases")
    r.add_argument("run", nargs="?", default="latest", help="run id, unique prefix, latest or latest~N")
    r.add_argument("--all", action="store_true", help="list every case, not only failures")
    r.add_argument("--json", action="store_true", help="the whole run (report.json) on stdout")
    r.set_defaults(handler=cmd_show)

    r = es.add_parser("diff", parents=[common], help="compare two runs: flipped cases and metric deltas")
    r.add_argument("a", help="the earlier run (baseline)")
    r.add_argument("b", nargs="?", default="latest", help="the later run (default: latest)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_diff)

    r = es.add_parser("report", parents=[common], help="(re)write a run's report.json and report.html")
    r.add_argument("run", nargs="?", default="latest")
    r.add_argument("--out", help="folder (default: LLMSPACE_HOME/evals/RUN)")
    r.set_defaults(handler=cmd_report)


def _register_feedback(sub, common) -> None:
    p = sub.add_parser("feedback", help="human feedback: list ratings, export them as eval cases")
    fs = p.add_subparsers(dest="feedback_command", metavar="SUBCOMMAND")
    fs.required = True
    r = fs.add_parser("ls", parents=[common], help="recent ratings")
    r.add_argument("--limit", type=int, default=20)
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_feedback_ls)
    r = fs.add_parser("export", parents=[common], help="rated answers as eval cases (JSONL)")
    r.add_argument("--rating", choices=["all", "up", "down"], default="all")
    r.add_argument("--out", help="write to this .jsonl file (default: stdout)")
    r.set_defaults(handler=cmd_feedback_export)


def _register_ab(sub, common) -> None:
    p = sub.add_parser("ab", help="online A/B: compare the served variants")
    abs_ = p.add_subparsers(dest="ab_command", metavar="SUBCOMMAND")
    abs_.required = True
    r = abs_.add_parser("report", parents=[common], help="feedback rate, latency and cost per variant")
    r.add_argument("--since-hours", type=float, help="only responses from the last N hours")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler=cmd_ab_report)
    r = abs_.add_parser("assign", parents=[common], help="which variant a user id or API key gets")
    r.add_argument("key", nargs="+")
    r.set_defaults(handler=cmd_ab_assign)


# ---------------------------------------------------------------- handlers
def cmd_run(args, services) -> int:
    from llmspace.evals.api import baseline_for_gate, prepare_run, run_set
    from llmspace.evals.config import EvalConfig
    from llmspace.evals.diff import diff_runs, format_diff, regressions
    from llmspace.evals.metrics import summary_lines
    from llmspace.evals.runner import EvalInterrupted

    if args.fail_on_regression and not args.baseline:
        print("error: --fail-on-regression needs --baseline RUN (see `llmspace eval ls`).", file=sys.stderr)
        return 1
    baseline = baseline_for_gate(services, args.baseline) if args.baseline else None
    cfg = EvalConfig.from_settings(services.settings, usd_per_hour=args.usd_per_hour,
                                   usd_per_1m_prompt_tokens=args.usd_per_1m_prompt,
                                   usd_per_1m_completion_tokens=args.usd_per_1m_completion,
                                   judge_model=args.judge_model)
    opts = dict(index=args.index, pattern=args.pattern, tags=args.tag or None, ids=args.case or None,
                limit=args.limit, max_tokens=args.max_tokens, rag_mode=args.rag_mode)
    def say(msg):
        print(msg, file=sys.stderr)

    eval_set, _ = prepare_run(services, args.set, say=say, **opts)  # fail fast, before the first case
    print(f"eval set {eval_set.name}: {len(eval_set.cases)} cases ({eval_set.path})", file=sys.stderr)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(eval_set.cases), unit="case", file=sys.stderr, dynamic_ncols=True)
    passed = 0

    def progress(done, total, result):
        nonlocal passed
        passed += int(result.passed)
        if bar is not None:
            bar.set_postfix_str(f"pass {passed}/{done} · {result.case_id}")
            bar.update(1)

    try:
        outcome = run_set(services, args.set, eval_config=cfg, judge=args.judge, judge_model=args.judge_model,
                          progress=progress, report_dir=args.out, **opts)
    except EvalInterrupted as exc:
        if bar is not None:
            bar.close()
        print(f"\ninterrupted: run {exc.run_id} stored as INCOMPLETE ({exc.done}/{exc.total} cases). "
              f"See `llmspace eval show {exc.run_id}`.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    run = outcome.run
    if args.json:
        print(json.dumps({"run": run.id, "status": run.status, "metrics": run.metrics,
                          "reports": {k: str(v) for k, v in outcome.reports.items()}}, indent=2))
    else:
        print(f"run {run.id} ({run.status})")
        print("\n".join(summary_lines(run.metrics or {}, run.config.get("cost", {}).get("description"))))
        print(f"report: {outcome.reports['html']}")
    if baseline is not None:
        d = diff_runs(baseline, run)
        print(format_diff(d), file=sys.stderr)
        drops = regressions(baseline, run, args.tolerance)
        for line in drops:
            print(f"REGRESSION: {line}", file=sys.stderr)
        if drops and args.fail_on_regression:
            return EXIT_REGRESSION
    return 0


def cmd_validate(args, services) -> int:
    from llmspace.evals.cases import load_eval_set
    from llmspace.evals.runner import known_indexes

    s = load_eval_set(args.set, known_indexes=known_indexes(services))
    tags = sorted({t for c in s.cases for t in c.tags})
    print(f"{s.path}: {len(s.cases)} valid cases ({sum(c.kind == 'rag' for c in s.cases)} RAG); "
          f"tags: {', '.join(tags) or '-'}; sha256 {s.sha256[:12]}")
    return 0


def cmd_ls(args, services) -> int:
    from llmspace.evals.api import store_for

    runs = store_for(services).list(args.limit)
    if args.json:
        print(json.dumps([r.to_dict(with_results=False) for r in runs], indent=2))
        return 0
    if not runs:
        print("No eval runs yet. Run `llmspace eval run`.")
        return 0
    print(f"{'run':22s} {'when':16s} {'status':10s} {'set':12s} {'cases':>5s} {'pass':>6s} {'cite':>6s} "
          f"{'p50':>6s} {'git':8s}")
    for r in runs:
        m = r.metrics or {}
        pr = "-" if m.get("pass_rate") is None else f"{100 * m['pass_rate']:.0f}%"
        # the headline: the model's own supported citations (older runs only have the any-origin rate)
        cite = m.get("cites_source_rate", m.get("citation_rate"))
        cr = "-" if cite is None else f"{100 * cite:.0f}%" + ("" if "cites_source_rate" in m else "*")
        p50 = "-" if m.get("latency_p50_s") is None else f"{m['latency_p50_s']:.2f}s"
        done = str(r.n_cases) if r.complete else f"{m.get('n_cases', 0)}/{r.n_cases}"
        print(f"{r.id:22s} {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.created_at)):16s} {r.status:10s} "
              f"{r.set_name[:12]:12s} {done:>5s} {pr:>6s} {cr:>6s} {p50:>6s} {(r.git_rev or '-')[:8]:8s}")
    return 0


def cmd_show(args, services) -> int:
    from llmspace.evals.api import get_run, report_paths
    from llmspace.evals.metrics import summary_lines

    run = get_run(services, args.run)
    if args.json:
        print(json.dumps(run.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print(f"run {run.id}: {run.status}" + (f" ({run.note})" if run.note else ""))
    print(f"set {run.set_name} ({run.set_path}), sha256 {run.dataset_sha256[:12]}, git {run.git_rev or '-'}")
    sysd = run.config.get("system", {})
    print(f"model {sysd.get('model')} / {sysd.get('backend')}, max new tokens chat {sysd.get('chat_max_tokens')} "
          f"/ RAG {sysd.get('rag_max_tokens')}")
    if run.metrics:
        print("\n".join(summary_lines(run.metrics, run.config.get("cost", {}).get("description"))))
    shown = run.results if args.all else [r for r in run.results if not r.passed]
    if shown:
        print("cases:" if args.all else "failing cases:")
    for r in shown:
        fails = [f"{a.type} {a.value!r} ({a.detail})" for a in r.assertions if not a.passed]
        print(f"  {'PASS' if r.passed else 'FAIL'} {r.case_id}: " + (r.error or "; ".join(fails) or "ok"))
        print(f"       answer: {r.output.strip()[:160]!r}")
    print(f"report: {report_paths(services, run)['html']}")
    return 0


def cmd_diff(args, services) -> int:
    from llmspace.evals.api import get_run
    from llmspace.evals.diff import diff_runs, format_diff

    d = diff_runs(get_run(services, args.a), get_run(services, args.b))
    print(json.dumps(d.to_dict(), indent=2) if args.json else format_diff(d))
    return 0


def cmd_report(args, services) -> int:
    from llmspace.evals.api import get_run
    from llmspace.evals.report import reports_dir, write_reports

    run = get_run(services, args.run)
    paths = write_reports(run, args.out or reports_dir(services.settings.home, run.id))
    print(f"{paths['json']}\n{paths['html']}")
    return 0


def cmd_feedback_ls(args, services) -> int:
    from llmspace.evals.feedback import list_feedback

    rows = list_feedback(services.settings.db_path, args.limit)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("No feedback yet: rate answers with the thumbs in the UI or POST /v1/feedback.")
    for f in rows:
        print(f"#{f['id']:<5d} {f['rating']:4s} {f['kind']:4s} {f['question'][:60]!r}"
              + (f"  — {f['comment'][:60]!r}" if f["comment"] else ""))
    return 0


def cmd_feedback_export(args, services) -> int:
    from llmspace.evals.feedback import export_cases, write_cases_jsonl

    cases = export_cases(services.settings.db_path, rating=args.rating)
    if args.out:
        path = write_cases_jsonl(cases, args.out)
        print(f"wrote {len(cases)} case(s) to {path}; run them with `llmspace eval run {path}`", file=sys.stderr)
    else:
        for c in cases:
            print(json.dumps(c, ensure_ascii=False))
    return 0


def cmd_ab_report(args, services) -> int:
    from llmspace.evals.ab import ab_router, format_ab_report

    since = time.time() - args.since_hours * 3600 if args.since_hours else None
    router = ab_router(services)
    rep = router.report(since)
    rep["config"] = router.describe()
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        cfg = rep["config"]
        if cfg["enabled"]:
            a, b, split = cfg["a"]["name"], cfg["b"]["name"], cfg["split"]
            print(f"A/B on: {100 * (1 - split):.0f}% {a} / {100 * split:.0f}% {b}")
        else:
            print("A/B is off (no `ab` setting).")
        print(format_ab_report(rep))
    return 0


def cmd_ab_assign(args, services) -> int:
    from llmspace.evals.ab import ab_router, assign

    router = ab_router(services)
    if not router.enabled:
        print("A/B is off (no `ab` setting); every request gets the default.", file=sys.stderr)
        return 1
    for key in args.key:
        print(f"{key}\t{assign(key, router.config).name}")
    return 0
