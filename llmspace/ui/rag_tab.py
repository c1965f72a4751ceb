"""RAG tab: pick an index (or upload files to make one), ask, read the answer
with numbered citations — each opens the exact passage with its source and
score — and inspect an index: its documents and a search preview.

Plain functions first (testable without a browser), then the layout.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import gradio as gr

from llmspace.errors import LLMSpaceError
from llmspace.ui.common import ui_errors, user_key
from llmspace.ui.eval_tab import feedback_row
from llmspace.ui.i18n import add_strings

add_strings(
    en={"tab_rag": "Ask the docs (RAG)", "rag_index": "Index", "rag_refresh": "Refresh",
        "rag_question": "Question", "rag_question_ph": "e.g. How should I chunk Chinese documents? / 混合检索为什么用 RRF？",
        "rag_ask": "Ask", "rag_mode": "Answer mode", "rag_top_k": "Sources (top-k)", "rag_answer": "Answer",
        "rag_citations": "Citations (click to open the passage)", "rag_upload": "Upload files (.md .txt .html .pdf .docx)",
        "rag_new_name": "New index name", "rag_build": "Build index", "rag_build_status": "Build report",
        "rag_inspector": "Index inspector", "rag_info": "Index", "rag_documents": "Documents",
        "rag_search_q": "Search preview", "rag_search_mode": "Retrieval", "rag_search": "Search",
        "rag_hits": "Retrieved chunks",
        "rag_help": "Answers come only from the chosen index and cite it as [n], or say \"I don't know\". With the "
                    "packaged 135M model, *auto* quotes the best sentences (each cited): it was measured to be right "
                    "more often than the model, which is English-only. *generate* shows the model's own answer, "
                    "kept only when its cited source supports it. A citation llmspace added is labelled as such."},
    zh={"tab_rag": "文档问答（RAG）", "rag_index": "索引", "rag_refresh": "刷新",
        "rag_question": "问题", "rag_question_ph": "例如：中文文档该怎么切块？/ How does hybrid retrieval work?",
        "rag_ask": "提问", "rag_mode": "回答方式", "rag_top_k": "资料数（top-k）", "rag_answer": "回答",
        "rag_citations": "引用（点击查看原文段落）", "rag_upload": "上传文件（.md .txt .html .pdf .docx）",
        "rag_new_name": "新索引名称", "rag_build": "建立索引", "rag_build_status": "建索引报告",
        "rag_inspector": "索引检查器", "rag_info": "索引信息", "rag_documents": "文档",
        "rag_search_q": "检索预览", "rag_search_mode": "检索方式", "rag_search": "检索",
        "rag_hits": "检索到的文本块",
        "rag_help": "回答只依据所选索引，并以 [n] 标注出处，找不到就回答「我不知道」。用内置的 135M 模型时，auto "
                    "会直接引用最相关的原句（每句都有出处）：实测它比只懂英文的模型自己回答更常答对。generate "
                    "显示模型自己的回答，只有引用的来源支持它时才保留。系统附上的引用会单独标明。"},
)

HIT_COLUMNS = ["rank", "score", "source", "heading", "dense", "bm25", "coverage", "text"]
DOC_COLUMNS = ["source", "format", "lang", "chunks", "bytes"]


def index_names(services) -> list[str]:
    return [i["name"] for i in services.rag.list()]


def answer_html(text: str, valid: set[int]) -> str:
    """The answer with each valid [n] linked to its citation below; invalid ones stay plain, marked '?'."""
    def link(m: re.Match) -> str:
        nums = [x.strip() for x in re.split(r"[,，]", m.group(1))]
        return "[" + ", ".join(f'<a href="#rag-cite-{n}">{n}</a>' if n.isdigit() and int(n) in valid else n
                               for n in nums) + "]"
    body = re.sub(r"\[([\d?,， ]+)\]", link, html.escape(text))
    return f'<div class="rag-answer" style="white-space:pre-wrap;font-size:1.05em">{body}</div>'


# Who made a citation: never show one llmspace added as if the model had written it.
ORIGIN_LABELS = {"model": "", "extractive": "<i>quoted</i> · ",
                 "attached": "<i>attached by llmspace — the model cited no source</i> · "}


def citations_html(services, index: str, answer) -> str:
    """One ``<details>`` per citation: source, heading, span, page, score; opens to the passage in context."""
    if not answer.citations:
        return ""
    rows = []
    pages = {h.chunk.id: h.chunk.page for h in answer.sources}
    try:
        documents = services.rag.retriever(index).index.documents
    except LLMSpaceError:
        documents = {}
    for c in answer.citations:
        if not c.valid:
            rows.append(f'<p id="rag-cite-{c.n}">[{c.n}?] not among the sources given — ignored.</p>')
            continue
        doc_text = documents.get(c.chunk_id.split(":")[0], {}).get("text")
        if doc_text:  # highlight exactly the cited span (a sentence, for extractive answers) in its context
            before = doc_text[max(0, c.start - 200):c.start]
            mid, after = doc_text[c.start:c.end], doc_text[c.end:c.end + 200]
        else:
            before, mid, after = "", c.snippet, ""
        page = pages.get(c.chunk_id)
        where = f"{c.source}" + (f" › {c.heading}" if c.heading else "") + (f" · p.{page}" if page else "")
        who = ORIGIN_LABELS.get(c.origin, "")
        rows.append(
            f'<details id="rag-cite-{c.n}" style="margin:.4em 0"><summary><b>[{c.n}]</b> {who}{html.escape(where)} · '
            f'score {c.score:.3f} · chars {c.start}-{c.end}</summary>'
            f'<blockquote style="white-space:pre-wrap">…{html.escape(before)}<mark>{html.escape(mid)}</mark>'
            f'{html.escape(after)}…</blockquote></details>')
    return "".join(rows)


def footer(answer) -> str:
    u, t = answer.usage, answer.timings
    notes = "".join(f"\n- {n}" for n in answer.notes)
    if answer.support is not None:
        sup = answer.support
        notes += ("\n- support check: the cited source supports the answer" if sup.get("supported") else
                  "\n- support check failed: " + "; ".join(sup.get("reasons") or []))
    return (f"mode **{answer.mode}** · {len(answer.sources)} sources · {u.prompt_tokens} prompt + "
            f"{u.completion_tokens} completion tokens · retrieve {t.get('retrieve_s', 0):.2f} s · total "
            f"{t.get('total_s', 0):.2f} s{notes}")


def ask(services, index: str, question: str, mode: str, top_k: int, user_key: str | None = None):
    """Stream (answer html, citations html, footer markdown). The library assigns
    the A/B arm (by ``user_key``) and records the answer, like every shell's."""
    if not index:
        raise gr.Error("Pick an index first, or upload files to build one. / 请先选择索引，或上传文件建立索引。")
    if not question or not question.strip():
        raise gr.Error("Type a question first. / 请先输入问题。")
    try:
        stream = services.rag.stream_answer(question, index, mode=mode, top_k=int(top_k), user_key=user_key)
        text = ""
        for item in stream:
            if isinstance(item, str):
                text += item
                yield answer_html(text, set()), "", "…"
            else:
                valid = {c.n for c in item.citations if c.valid}
                yield answer_html(item.text, valid), citations_html(services, index, item), footer(item)
    except LLMSpaceError as exc:
        raise gr.Error(exc.message) from None


def build_from_upload(services, files, name: str, progress=None):
    """Build an index from uploaded files; returns (report markdown, index dropdown update)."""
    if not files:
        raise gr.Error("Upload at least one file. / 请至少上传一个文件。")
    pairs = []
    for f in files:
        path = Path(f if isinstance(f, str) else getattr(f, "name", f))
        orig = getattr(f, "orig_name", None) or path.name  # gradio keeps the user's file name in the temp path
        pairs.append((orig, path))
    say = (lambda frac, msg: progress(frac, desc=msg)) if progress is not None else None
    report = ui_errors(services.rag.build_from_uploads)((name or "").strip(), pairs, progress=say)
    lines = [f"**{report.name}**: {report.documents} documents, {report.chunks} chunks in {report.seconds:.1f} s"]
    lines += [f"- ⚠ {w}" for w in report.warnings]
    return "\n".join(lines), gr.Dropdown(choices=index_names(services), value=report.name)


def inspect(services, index: str):
    """(info markdown, documents rows)."""
    if not index:
        return "", []
    info = ui_errors(services.rag.info)(index)
    s = info["summary"]
    md = (f"**{s['name']}** · {s['documents']} documents · {s['chunks']} chunks · {s['bytes'] / 2**20:.2f} MiB · "
          f"embedding `{info['embedding']['model']}` · dense `{info['dense']['kind']}` · chunker "
          f"{info['chunker']['chunk_tokens']} tokens / {info['chunker']['overlap_tokens']} overlap · built "
          f"{info.get('built_at')}")
    md += "".join(f"\n- skipped {x['source']}: {x['reason']}" for x in info.get("skipped", []))
    rows = [[src, f.get("format"), f.get("lang"), f.get("chunks"), f.get("bytes")]
            for src, f in info.get("files", {}).items()]
    return md, rows


def search_rows(services, index: str, query: str, mode: str, top_k: int) -> list[list]:
    if not index:
        raise gr.Error("Pick an index first. / 请先选择索引。")
    hits = ui_errors(services.rag.search)(query, index, mode=mode, top_k=int(top_k))
    return [[h.rank, round(h.score, 4), h.chunk.source, h.chunk.heading, h.scores.get("dense"),
             h.scores.get("bm25"), h.scores.get("coverage"), h.chunk.text[:400]] for h in hits]


def build(services, t) -> None:
    s = services.settings
    names = index_names(services)
    default = s.default_index if s.default_index in names else (names[0] if names else None)
    gr.Markdown(t("rag_help"))
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                index = gr.Dropdown(names, value=default, label=t("rag_index"), scale=3)
                refresh = gr.Button(t("rag_refresh"), scale=1)
            question = gr.Textbox(label=t("rag_question"), placeholder=t("rag_question_ph"), lines=2)
            ask_btn = gr.Button(t("rag_ask"), variant="primary")
            answer = gr.HTML(label=t("rag_answer"))
            cites = gr.HTML(label=t("rag_citations"))
            stats = gr.Markdown()
            feedback_row(services, question, answer, kind="rag", index=index)
        with gr.Column(scale=1):
            mode = gr.Radio(["auto", "generate", "extractive"], value="auto", label=t("rag_mode"))
            top_k = gr.Slider(1, 10, value=4, step=1, label=t("rag_top_k"))
            files = gr.File(label=t("rag_upload"), file_count="multiple",
                            file_types=[".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx"])
            new_name = gr.Textbox(label=t("rag_new_name"), value="my-docs")
            build_btn = gr.Button(t("rag_build"))
            build_status = gr.Markdown(label=t("rag_build_status"))
    with gr.Accordion(t("rag_inspector"), open=False):
        info_md = gr.Markdown(label=t("rag_info"))
        docs = gr.Dataframe(headers=DOC_COLUMNS, label=t("rag_documents"), interactive=False)
        with gr.Row():
            sq = gr.Textbox(label=t("rag_search_q"), scale=3)
            smode = gr.Radio(["hybrid", "dense", "bm25"], value="hybrid", label=t("rag_search_mode"), scale=2)
            sbtn = gr.Button(t("rag_search"), scale=1)
        hits = gr.Dataframe(headers=HIT_COLUMNS, label=t("rag_hits"), wrap=True, interactive=False)

    def _ask(idx, q, m, k, request: gr.Request):
        yield from ask(services, idx, q, m, k, user_key=user_key(request))

    def _build(f, n, progress=gr.Progress()):
        return build_from_upload(services, f, n, progress)

    ask_btn.click(_ask, [index, question, mode, top_k], [answer, cites, stats], api_name="rag_answer",
                  concurrency_id="model")
    question.submit(_ask, [index, question, mode, top_k], [answer, cites, stats], api_visibility="private",
                    concurrency_id="model")
    build_btn.click(_build, [files, new_name], [build_status, index], api_name="rag_build",
                    concurrency_id="model")
    refresh.click(lambda: gr.Dropdown(choices=index_names(services)), None, index, api_visibility="private")
    index.change(lambda i: inspect(services, i), index, [info_md, docs], api_name="rag_index_info")
    sbtn.click(lambda i, q, m, k: search_rows(services, i, q, m, k), [index, sq, smode, top_k], hits,
               api_name="rag_search")
