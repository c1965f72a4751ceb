"""Plain-text rendering of RAG results for the terminal (``llmspace ask --index``,
``llmspace search``, ``llmspace index info``)."""

from __future__ import annotations

from llmspace.rag.citations import snippet
from llmspace.rag.types import Answer, SearchHit


def _where(source: str, heading: str, start: int, end: int, page: int | None = None) -> str:
    loc = f"{source}" + (f" › {heading}" if heading else "") + f"  [chars {start}-{end}]"
    return loc + (f" p.{page}" if page else "")


def format_answer(answer: Answer) -> str:
    lines = [answer.text, ""]
    valid = [c for c in answer.citations if c.valid]
    if valid:
        lines.append("Citations:")
        for c in valid:
            page = next((h.chunk.page for h in answer.sources if h.chunk.id == c.chunk_id), None)
            who = {"attached": "  (attached by llmspace: the model cited no source)", "extractive": "  (quoted)"}
            lines.append(f"  [{c.n}] {_where(c.source, c.heading, c.start, c.end, page)}  score {c.score:.3f}"
                         f"{who.get(c.origin, '')}")
            lines.append(f"      {c.snippet}")
    if answer.invalid_citations:
        lines.append("Invalid citations (not among the sources): "
                     + ", ".join(f"[{n}]" for n in answer.invalid_citations))
    if answer.support is not None and not answer.support.get("supported"):
        lines.append("support check failed: " + "; ".join(answer.support.get("reasons") or []))
    for note in answer.notes:
        lines.append(f"note: {note}")
    t, u = answer.timings, answer.usage
    lines.append(f"[mode {answer.mode}; {len(answer.sources)} sources; {u.prompt_tokens} prompt + "
                 f"{u.completion_tokens} completion tokens; retrieve {t.get('retrieve_s', 0):.2f}s, "
                 f"total {t.get('total_s', 0):.2f}s]")
    return "\n".join(lines)


def format_hits(hits: list[SearchHit]) -> str:
    if not hits:
        return "No matching chunks."
    lines = []
    for h in hits:
        c = h.chunk
        parts = ", ".join(f"{k} {v:.3f}" for k, v in h.scores.items() if k in ("dense", "bm25", "coverage")
                          and isinstance(v, float))
        lines.append(f"{h.rank}. {h.score:.3f}  {_where(c.source, c.heading, c.start, c.end, c.page)}  ({parts})")
        lines.append(f"   {snippet(c.text, 300)}")
    return "\n".join(lines)


def format_index_list(rows: list[dict]) -> str:
    if not rows:
        return "No indexes yet. Build one: llmspace index build PATH --name NAME"
    out = [f"{'name':<20} {'docs':>5} {'chunks':>7} {'MiB':>7}  {'dense':<5}  {'embedding':<20} built"]
    for r in rows:
        out.append(f"{r['name']:<20} {r['documents']:>5} {r['chunks']:>7} {r['bytes'] / 2**20:>7.2f}  "
                   f"{r['dense'] or '':<5}  {r['embedding_model'] or '':<20} {r['built_at'] or ''}")
    return "\n".join(out)


def format_index_info(info: dict) -> str:
    s = info["summary"]
    lines = [f"index {s['name']}  ({s['path']})",
             f"  built {info.get('built_at')} by llmspace {info.get('llmspace_version')} in "
             f"{info.get('build_seconds')} s",
             f"  embedding {info['embedding']['model']} ({info['embedding']['dimension']} dims); "
             f"dense {info['dense']['kind']}; BM25 {info['bm25']['library']}",
             f"  chunker {info['chunker']}",
             f"  {s['documents']} documents, {s['chunks']} chunks, {s['bytes'] / 2**20:.2f} MiB on disk; "
             f"languages {info['counts'].get('languages')}",
             "  documents:"]
    for src, f in info.get("files", {}).items():
        lines.append(f"    {src}  ({f['format']}, {f['lang']}, {f['chunks']} chunks)")
    for s_ in info.get("skipped", []):
        lines.append(f"  skipped {s_['source']}: {s_['reason']}")
    for d in info.get("duplicates", []):
        lines.append(f"  duplicate {d['source']}: {d['reason']}")
    return "\n".join(lines)
