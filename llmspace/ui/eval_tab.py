"""Eval tab: run a set (with progress), see the summary, the case table and
the charts, compare two runs; the live A/B split and its results. Also
``wire_feedback``: thumbs up/down on any chatbot, stored as human feedback.

Plain functions first (testable without a browser), then the layout.
"""

from __future__ import annotations

import html
import re

import gradio as gr

from llmspace.errors import LLMSpaceError
from llmspace.ui.common import ui_errors
from llmspace.ui.i18n import add_strings

add_strings(
    en={"tab_eval": "Eval", "eval_set": "Eval set", "eval_upload": "…or upload a .jsonl set",
        "eval_tags": "Only these tags (comma-separated, optional)", "eval_max_tokens": "Max new tokens per answer",
        "eval_run": "Run eval", "eval_summary": "Summary", "eval_cases": "Cases", "eval_charts": "Charts",
        "eval_report": "HTML report", "eval_compare": "Compare two runs", "eval_run_a": "Run A (baseline)",
        "eval_run_b": "Run B", "eval_diff": "Compare", "eval_refresh": "Refresh runs",
        "eval_ab": "Online A/B", "eval_ab_refresh": "Refresh A/B results",
        "eval_help": "Runs every case through the real model and RAG; stored under LLMSPACE_HOME with its "
                     "config, dataset hash and git revision (`llmspace eval ls`)."},
    zh={"tab_eval": "评测", "eval_set": "评测集", "eval_upload": "……或上传 .jsonl 评测集",
        "eval_tags": "只跑这些标签（逗号分隔，可选）", "eval_max_tokens": "每条回答的最大新 token 数",
        "eval_run": "运行评测", "eval_summary": "汇总", "eval_cases": "用例", "eval_charts": "图表",
        "eval_report": "HTML 报告", "eval_compare": "对比两次运行", "eval_run_a": "运行 A（基线）",
        "eval_run_b": "运行 B", "eval_diff": "对比", "eval_refresh": "刷新运行列表",
        "eval_ab": "线上 A/B", "eval_ab_refresh": "刷新 A/B 结果",
        "eval_help": "每条用例都经过真实模型与 RAG；结果连同配置、数据集哈希与 git 版本存于 LLMSPACE_HOME"
                     "（`llmspace eval ls`）。"},
)

CASE_COLUMNS = ["case", "result", "tags", "question", "answer", "failed checks", "cited", "tokens", "latency (s)"]


def set_choices() -> list[str]:
    from llmspace.evals.cases import bundled_sets

    return list(bundled_sets())


def run_choices(services) -> list[tuple[str, str]]:
    from llmspace.evals.api import store_for

    out = []
    for r in store_for(services).list(50):
        pr = (r.metrics or {}).get("pass_rate")
        out.append((f"{r.id} · {r.set_name} · {r.status}" + ("" if pr is None else f" · {100 * pr:.0f}%"), r.id))
    return out


def case_rows(run) -> list[list]:
    rows = []
    for r in run.results:
        fails = "; ".join(f"{a.type}: {a.detail}" for a in r.assertions if not a.passed)
        cited = ", ".join(f"[{n}] {src}" for n, src in sorted({c["n"]: c["source"] for c in r.cited
                                                                 if c.get("valid")}.items()))
        rows.append([r.case_id, "pass" if r.passed else ("error" if r.error else "fail"), ", ".join(r.tags),
                     r.question, r.output.strip()[:300], r.error or fails, cited,
                     f"{r.prompt_tokens}+{r.completion_tokens}", round(r.total_s or 0.0, 2)])
    return rows


def charts_html(run) -> str:
    from llmspace.evals.report import latency_histogram_svg, tag_pass_rates_svg

    m = run.metrics or {}
    lat = [r.total_s for r in run.results if not r.error and r.total_s is not None]
    parts = [latency_histogram_svg(lat, m.get("latency_p50_s"), m.get("latency_p95_s"))]
    if m.get("pass_rate_by_tag"):
        parts.append(tag_pass_rates_svg(m["pass_rate_by_tag"]))
    return '<div style="display:flex;flex-wrap:wrap;gap:1rem">' + "".join(
        f'<div style="max-width:560px">{p}</div>' for p in parts) + "</div>"


def summary_md(run) -> str:
    from llmspace.evals.metrics import summary_lines

    head = f"**run `{run.id}`** — {run.status}" + (f" ({html.escape(run.note)})" if run.note else "")
    lines = summary_lines(run.metrics or {}, (run.config.get("cost") or {}).get("description"))
    return head + "\n\n" + "\n".join(f"- {html.escape(x)}" for x in lines)


def run_eval_ui(services, set_name: str | None, upload, tags: str, max_tokens: float, progress=None):
    """Run a set; returns (summary, rows, charts, report path)."""
    from llmspace.evals.api import run_set

    path = getattr(upload, "name", upload) if upload else None
    tag_list = [t.strip() for t in (tags or "").split(",") if t.strip()] or None

    def on_case(done, total, result):
        if progress is not None:
            progress((done, total), desc=f"{result.case_id}: {'pass' if result.passed else 'fail'}")

    outcome = run_set(services, path or set_name or None, tags=tag_list, max_tokens=int(max_tokens),
                      progress=on_case)
    run = outcome.run
    return summary_md(run), case_rows(run), charts_html(run), str(outcome.reports["html"])


def show_run(services, ref: str):
    from llmspace.evals.api import get_run, report_paths

    run = get_run(services, ref)
    return summary_md(run), case_rows(run), charts_html(run), str(report_paths(services, run)["html"])


def compare_md(services, a: str, b: str) -> str:
    from llmspace.evals.api import get_run
    from llmspace.evals.diff import diff_runs, format_diff

    if not a or not b:
        raise LLMSpaceError("Pick two runs to compare.")
    return "```\n" + format_diff(diff_runs(get_run(services, a), get_run(services, b))) + "\n```"


def ab_md(services) -> str:
    from llmspace.evals.ab import ab_router, format_ab_report

    cfg = ab_router(services).describe()
    if cfg["enabled"]:
        head = (f"A/B **on**: {100 * (1 - cfg['split']):.0f}% `{cfg['a']['name']}` / "
                f"{100 * cfg['split']:.0f}% `{cfg['b']['name']}` (stable per user / API key)")
    else:
        head = "A/B is **off** (set `ab` to split traffic between two variants; see docs/evals.md)."
    return head + "\n\n```\n" + format_ab_report(ab_router(services).report()) + "\n```"


def feedback_from_like(services, history: list, data: gr.LikeData, kind: str = "chat",
                       index: str | None = None) -> dict:
    """Store a thumbs up/down on ``history[data.index]`` (an assistant message)."""
    from llmspace.evals.feedback import add_feedback

    i = data.index if isinstance(data.index, int) else data.index[0]
    msgs = history or []
    answer = _text(msgs[i]) if i < len(msgs) else _text(data.value)
    question = next((_text(m) for m in reversed(msgs[:i]) if _role(m) == "user"), "")
    liked = data.liked if isinstance(data.liked, bool) else data.liked != "dislike"
    return add_feedback(services.settings.db_path, rating="up" if liked else "down", question=question,
                        answer=answer, kind=kind, index=index)


def _role(m) -> str | None:
    return m.get("role") if isinstance(m, dict) else getattr(m, "role", None)


def _text(m) -> str:
    content = m.get("content") if isinstance(m, dict) else getattr(m, "content", m)
    if isinstance(content, list):  # Gradio 6 content blocks
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    if isinstance(content, dict):
        return content.get("text", content.get("value", ""))
    text = "" if content is None else str(content)
    if "<" in text and re.search(r"</?(p|div|span|br|sup|a|b|i|em|strong|ol|ul|li)\b", text):
        # an answer shown in gr.HTML: keep what the reader saw, not the markup
        text = html.unescape(re.sub(r"<br\s*/?>|</p>|</li>|</div>", "\n", text))
        text = re.sub(r"<[^>]+>", "", text).strip()
    return text


def wire_feedback(chatbot: gr.Chatbot, services, kind: str = "chat", index_component=None) -> None:
    """Thumbs on ``chatbot`` are stored as feedback. Call inside the Blocks that holds it."""
    inputs = [chatbot] + ([index_component] if index_component is not None else [])

    def on_like(history, *rest, data: gr.LikeData):
        try:
            feedback_from_like(services, history, data, kind=kind, index=rest[0] if rest else None)
        except LLMSpaceError as exc:
            raise gr.Error(exc.message) from None
        gr.Info("Thanks — feedback saved. / 已记录反馈。")

    chatbot.like(on_like, inputs, None, api_visibility="private")


def feedback_row(services, question, answer, kind: str = "rag", index=None) -> None:
    """👍 / 👎 buttons and an optional comment under an answer shown in any
    component (e.g. a RAG tab's Markdown). ``question``/``answer``/``index`` are
    components whose values are read when a button is pressed."""
    with gr.Row():
        up = gr.Button("👍", scale=0, min_width=60)
        down = gr.Button("👎", scale=0, min_width=60)
        comment = gr.Textbox(placeholder="Optional comment / 可选评论", show_label=False, scale=4, max_lines=2)
    inputs = [question, answer, comment] + ([index] if index is not None else [])

    def make(rating):
        def handler(q, a, c, *rest):
            from llmspace.evals.feedback import add_feedback

            try:
                add_feedback(services.settings.db_path, rating=rating, question=_text(q), answer=_text(a),
                             comment=c or None, kind=kind, index=rest[0] if rest else None)
            except LLMSpaceError as exc:
                raise gr.Error(exc.message) from None
            gr.Info("Thanks — feedback saved. / 已记录反馈。")
            return ""
        return handler

    up.click(make("up"), inputs, comment, api_name=f"feedback_{kind}_up")
    down.click(make("down"), inputs, comment, api_name=f"feedback_{kind}_down")


# ------------------------------------------------------------------- layout
def build(services, t) -> None:
    known = run_choices(services)
    # the newest run is on screen from the start (reading it is cheap; no model is loaded)
    first = show_run(services, known[0][1]) if known else ("", None, "", None)
    gr.Markdown(t("eval_help"))
    with gr.Row():
        with gr.Column(scale=1):
            choices = set_choices()
            set_name = gr.Dropdown(choices, value="starter" if "starter" in choices else None, label=t("eval_set"))
            upload = gr.File(label=t("eval_upload"), file_types=[".jsonl"])
            tags = gr.Textbox(label=t("eval_tags"), placeholder="en, zh, rag")
            max_tokens = gr.Slider(8, 512, value=96, step=8, label=t("eval_max_tokens"))
            run_btn = gr.Button(t("eval_run"), variant="primary")
        with gr.Column(scale=2):
            summary = gr.Markdown(first[0], label=t("eval_summary"))
            charts = gr.HTML(first[2], label=t("eval_charts"))
            report = gr.File(first[3], label=t("eval_report"), interactive=False)
    cases = gr.Dataframe(first[1], headers=CASE_COLUMNS, label=t("eval_cases"), wrap=True, interactive=False)
    with gr.Accordion(t("eval_compare"), open=False):
        with gr.Row():
            run_a = gr.Dropdown(known, value=known[1][1] if len(known) > 1 else None, label=t("eval_run_a"))
            run_b = gr.Dropdown(known, value=known[0][1] if known else None, label=t("eval_run_b"))
        with gr.Row():
            refresh = gr.Button(t("eval_refresh"))
            diff_btn = gr.Button(t("eval_diff"))
        diff_out = gr.Markdown()
    with gr.Accordion(t("eval_ab"), open=False):
        ab_out = gr.Markdown(ab_md(services))
        ab_btn = gr.Button(t("eval_ab_refresh"))

    def _run(set_choice, up, tag_text, mt, progress=gr.Progress()):
        return ui_errors(run_eval_ui)(services, set_choice, up, tag_text, mt, progress)

    def _runs():
        c = run_choices(services)
        return gr.Dropdown(choices=c, value=c[1][1] if len(c) > 1 else None), gr.Dropdown(
            choices=c, value=c[0][1] if c else None)

    run_btn.click(_run, [set_name, upload, tags, max_tokens], [summary, cases, charts, report],
                  api_name="eval_run", concurrency_id="model").then(_runs, None, [run_a, run_b],
                                                                   api_visibility="private")
    refresh.click(_runs, None, [run_a, run_b], api_visibility="private")
    diff_btn.click(lambda a, b: ui_errors(compare_md)(services, a, b), [run_a, run_b], diff_out,
                   api_name="eval_diff")
    run_b.change(lambda ref: ui_errors(show_run)(services, ref) if ref else (gr.skip(),) * 4, run_b,
                 [summary, cases, charts, report], api_visibility="private")
    ab_btn.click(lambda: ab_md(services), None, ab_out, api_name="ab_report")
