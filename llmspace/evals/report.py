"""Reports: ``report.json`` for machines, ``report.html`` for people.

The HTML page is self-contained: styles inline, charts as inline SVG drawn by
matplotlib (no CDN, no script), so it opens from disk, a CI artefact or mail.
Both files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import html
import io
import json
import os
import tempfile
import time
from pathlib import Path

from llmspace.evals.metrics import summary_lines
from llmspace.evals.store import RunRecord


def reports_dir(home: Path, run_id: str) -> Path:
    return Path(home) / "evals" / run_id


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(run: RunRecord, out_dir: Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html"}
    atomic_write(paths["json"], json.dumps(run.to_dict(), ensure_ascii=False, indent=2))
    atomic_write(paths["html"], render_html(run))
    return paths


# --------------------------------------------------------------------- charts
def _figure(figsize: tuple[float, float]):
    """A standalone ``Figure`` and its axes. Not pyplot: pyplot keeps global
    state (current figure, backend) that server threads rendering at once
    would share; a ``Figure`` belongs to its caller and is freed with it."""
    import matplotlib
    from matplotlib.figure import Figure

    if matplotlib.rcParams["svg.fonttype"] != "none":
        matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable (one constant value)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: inline in HTML


def latency_histogram_svg(latencies: list[float], p50: float | None = None, p95: float | None = None) -> str:
    fig, ax = _figure((5.5, 2.8))
    if latencies:
        ax.hist(latencies, bins=min(20, max(5, len(latencies) // 2)), color="#4c78a8", edgecolor="white")
        for v, label, color in ((p50, "p50", "#f58518"), (p95, "p95", "#e45756")):
            if v is not None:
                ax.axvline(v, color=color, linestyle="--", linewidth=1.2, label=f"{label} {v:.2f}s")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("latency per answer (s)")
    ax.set_ylabel("cases")
    ax.set_title("Latency", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def tag_pass_rates_svg(by_tag: dict[str, dict]) -> str:
    tags = list(by_tag)
    fig, ax = _figure((5.5, 0.45 * max(len(tags), 2) + 0.8))
    rates = [100 * by_tag[t]["pass_rate"] for t in tags]
    bars = ax.barh(tags, rates, color=["#54a24b" if r >= 50 else "#e45756" for r in rates])
    for bar, t in zip(bars, tags, strict=True):
        ax.text(min(bar.get_width() + 1, 92), bar.get_y() + bar.get_height() / 2,
                f"{by_tag[t]['passed']}/{by_tag[t]['n']}", va="center", fontsize=8)
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("pass rate (%)")
    ax.set_title("Pass rate per tag", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


# ----------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC",sans-serif;
  margin:2rem;color:#222;max-width:1200px}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem} code{background:#f3f3f3;padding:0 .2rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{border-bottom:1px solid #ddd;padding:.35rem;text-align:left;vertical-align:top}
th{background:#fafafa} .pass{color:#2e7d32;font-weight:600} .fail{color:#c62828;font-weight:600}
.kv td:first-child{color:#555;width:16rem} .charts{display:flex;flex-wrap:wrap;gap:1.5rem}
.charts svg{max-width:100%;height:auto}
.banner{padding:.6rem 1rem;background:#fff3cd;border:1px solid #e0c060;margin:1rem 0}
details{margin:.2rem 0} pre{white-space:pre-wrap;margin:.2rem 0;font-size:.8rem} .muted{color:#777}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _sec(x) -> str:
    return "n/a" if x is None else f"{x:.2f} s" if x >= 0.1 else f"{1000 * x:.1f} ms"


def _usd(x) -> str:
    return "n/a" if x is None else f"${x:.6f}"


def render_html(run: RunRecord) -> str:
    m = run.metrics or {}
    cfg = run.config or {}
    cost = cfg.get("cost", {})
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.created_at))
    banner = "" if run.complete else (
        f'<div class="banner">This run is <b>{_e(run.status)}</b>: {_e(run.note or "")}. '
        "Figures cover only the cases that finished.</div>")
    rows = [("status", run.status), ("eval set", f"{run.set_name} ({run.set_path})"),
            ("dataset sha256", run.dataset_sha256[:16]), ("git revision", run.git_rev or "unknown"),
            ("model / backend", f"{cfg.get('system', {}).get('model')} / {cfg.get('system', {}).get('backend')}"),
            ("max new tokens (chat / RAG)", f"{cfg.get('system', {}).get('chat_max_tokens')} / "
                                            f"{cfg.get('system', {}).get('rag_max_tokens')}"),
            ("cases", f"{m.get('n_cases', 0)} ({m.get('n_errors', 0)} errors)"),
            ("pass rate", _pct(m.get("pass_rate"))),
            ("cites its source (the model's own [n], supported)",
             f"{_pct(m.get('cites_source_rate'))} of {m.get('n_rag', 0)} RAG answers"),
            ("native citation rate (the model wrote [n])", _pct(m.get("native_citation_rate"))),
            ("supported citation rate (any origin)", _pct(m.get("supported_citation_rate"))),
            ("quoted (extractive) / attached by llmspace", f"{_pct(m.get('quoted_citation_rate'))} / "
                                                            f"{_pct(m.get('attached_citation_rate'))}"),
            ("citation rate, any origin", _pct(m.get("citation_rate"))),
            ("citation precision (cited ⊆ gold)", _pct(m.get("citation_precision"))),
            (f"context recall@{m.get('k') or 'k'}", _pct(m.get("context_recall_at_k"))),
            ("latency mean / p50 / p95", " / ".join(_sec(m.get(k)) for k in
                                                    ("latency_mean_s", "latency_p50_s", "latency_p95_s"))),
            ("time to first token p50 / p95", f"{_sec(m.get('ttft_p50_s'))} / {_sec(m.get('ttft_p95_s'))}"),
            ("tokens (prompt + completion)", f"{m.get('prompt_tokens', 0)} + {m.get('completion_tokens', 0)}"),
            ("cost total / per answer / per 1k tokens", " / ".join(_usd(m.get(k)) for k in
                                                                  ("cost_usd", "cost_per_answer_usd",
                                                                   "cost_per_1k_tokens_usd"))),
            ("cost model", cost.get("description", "n/a"))]
    if m.get("judge_faithfulness_mean") is not None:
        rows.append(("LLM-as-judge faithfulness (model-graded, not ground truth)",
                     f"{m['judge_faithfulness_mean']:.2f} (judge: {(cfg.get('judge') or {}).get('model')})"))
    summary = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    lat = [r.total_s for r in run.results if not r.error and r.total_s is not None]
    charts = latency_histogram_svg(lat, m.get("latency_p50_s"), m.get("latency_p95_s"))
    if m.get("pass_rate_by_tag"):
        charts += tag_pass_rates_svg(m["pass_rate_by_tag"])
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>llmspace eval {_e(run.id)}"
            f"</title><style>{_CSS}</style></head><body><h1>llmspace eval run <code>{_e(run.id)}</code></h1>"
            f"<p class=\"muted\">{_e(when)} · {_e(' · '.join(summary_lines(m)[:1]))}</p>{banner}"
            f"<h2>Summary</h2><table class=\"kv\">{summary}</table><h2>Charts</h2><div class=\"charts\">{charts}</div>"
            f"<h2>Cases</h2>{_case_table(run)}</body></html>")


def _case_table(run: RunRecord) -> str:
    head = ("<tr><th>case</th><th>result</th><th>tags</th><th>question / answer</th><th>assertions</th>"
            "<th>cited</th><th>tokens</th><th>latency</th><th>cost</th></tr>")
    body = []
    for r in run.results:
        verdict = '<span class="pass">pass</span>' if r.passed else '<span class="fail">fail</span>'
        checks = "<br>".join(
            f'<span class="{"pass" if a.passed else "fail"}">{"✓" if a.passed else "✗"}</span> '
            f"{_e(a.type)} <code>{_e(a.value)}</code> <span class=\"muted\">{_e(a.detail)}</span>"
            for a in r.assertions) or '<span class="muted">none</span>'
        if r.error:
            checks = f'<span class="fail">error</span> {_e(r.error)}<br>' + checks
        cited = _cited_html(r.cited)
        retrieved = ", ".join(_e(s.get("chunk_id")) for s in r.retrieved)
        judge = f"<br><span class=\"muted\">judge: {r.judge.get('faithfulness')}</span>" if r.judge else ""
        body.append(
            f"<tr><td><code>{_e(r.case_id)}</code><br><span class=\"muted\">{_e(r.kind)}</span></td><td>{verdict}"
            f"</td><td>{_e(', '.join(r.tags))}</td><td><b>{_e(r.question)}</b><details><summary>answer"
            f"</summary><pre>{_e(r.output)}</pre>"
            + (f"<div class=\"muted\">retrieved: {retrieved}</div>" if retrieved else "")
            + (f"<div class=\"muted\">gold: {_e(', '.join(r.gold_sources))}</div>" if r.gold_sources else "")
            + f"</details></td><td>{checks}</td><td>{cited}{judge}</td><td>{r.prompt_tokens}+{r.completion_tokens}"
            f"</td><td>{_sec(r.total_s)}</td><td>{_usd(r.cost_usd)}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _cited_html(cited: list[dict]) -> str:
    """Valid citations once each; invalid [n] summarised (a small model may emit dozens)."""
    valid = {c.get("n"): c for c in cited if c.get("valid")}
    tag = {"attached": " (attached by llmspace)", "extractive": " (quoted)"}
    parts = [f"[{n}] {_e(c.get('source'))}{tag.get(c.get('origin', 'model'), '')}"
             for n, c in sorted(valid.items(), key=lambda kv: kv[0] or 0)]
    bad = sorted({c.get("n") for c in cited if not c.get("valid")}, key=lambda n: n or 0)
    if bad:
        shown = " ".join(f"[{n}]" for n in bad[:5]) + (" …" if len(bad) > 5 else "")
        parts.append(f'<span class="fail">invalid: {shown} ({len(bad)})</span>')
    return "<br>".join(parts) or '<span class="muted">-</span>'
