"""RAG end to end with the real models: MiniLM embeddings, SmolLM2-135M greedy.

A two-language corpus (md, html, txt, pdf; md, GBK txt, docx) is indexed once
per module; tests that change an index build their own. Every bad input of the
issue is here, and each leaves no index or temp folder behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_rag_docs import BEES, make_pdf, write_corpus

from llmspace.config import Settings
from llmspace.engine.base import Delta, Usage
from llmspace.errors import ConfigError, ContextLengthError, NotFoundError, ValidationError
from llmspace.rag.answer import AnswerParams, answer
from llmspace.rag.bundled import ensure_bundled_index
from llmspace.rag.index import list_indexes
from llmspace.rag.retrieve import RetrievalParams
from llmspace.rag.types import Answer
from llmspace.services import Services

pytestmark = pytest.mark.slow


def _services(home: Path, shared, **overrides) -> Services:
    """A Services on its own home that reuses the session's loaded models."""
    s = Services(Settings.load(env={}, home=home, **overrides))
    s.__dict__["embedder"] = shared.embedder
    s.__dict__["engine"] = shared.engine
    return s


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, session_services, corpus):
    """(services, build report) with index "docs" over the two-language corpus."""
    home = tmp_path_factory.mktemp("rag_home")
    (home / "models").symlink_to(session_services.settings.models_dir, target_is_directory=True)
    services = _services(home, session_services)
    report = services.rag.build([corpus], "docs")
    return services, report


@pytest.fixture
def services(llmspace_home, session_services) -> Services:
    return _services(llmspace_home, session_services)


def leftovers(indexes_dir: Path) -> list[str]:
    """Hidden folders a build left behind: temp folders, and versions no index links to
    (``<name>`` links to ``.<name>.versions/<id>``; see ``llmspace.fsutil``)."""
    out = []
    for p in sorted(indexes_dir.glob(".*")) if indexes_dir.exists() else []:
        name = p.name[1:-len(".versions")] if p.name.endswith(".versions") else None
        if name and (indexes_dir / name).is_symlink():
            linked = Path(os.path.realpath(indexes_dir / name)).name
            out += [f"{p.name}/{v.name}" for v in p.iterdir() if v.name != linked]
        elif p.is_dir():
            out.append(p.name)
    return out


# ---------------------------------------------------------------- build + retrieval
def test_build_reads_every_format_with_provenance(built):
    services, report = built
    assert report.documents == 7 and not report.skipped and report.embedded_chunks == report.chunks
    info = services.rag.info("docs")
    assert info["embedding"]["model"] == "all-minilm-l6-v2" and info["chunker"]["chunk_tokens"] == 160
    assert info["counts"]["languages"]["zh"] >= 3 and info["llmspace_version"]
    assert info["files"]["zh/great_wall.txt"]["lang"] == "zh"
    index = services.rag.retriever("docs").index
    for c in index.chunks:  # spans point into the stored document text
        assert index.documents[c.doc_id]["text"][c.start:c.end] == c.text
    assert {c.page for c in index.chunks if c.source == "solar.pdf"} == {1, 2}


@pytest.mark.parametrize("question, source", [
    ("How do honey bees keep warm in winter?", "bees.md"),
    ("Which kind of lava is runny and why?", "volcanoes.html"),
    ("At what angle should solar panels face?", "solar.pdf"),
    ("大熊猫每天吃多少竹子？", "zh/panda.docx"),
    ("现在看到的长城大多是哪个朝代修建的？", "zh/great_wall.txt"),  # GBK-encoded file
    ("冲泡绿茶的水温应该是多少？", "zh/tea.md"),
])
def test_a_question_in_either_language_finds_its_file_in_the_top_3(built, question, source):
    services, _ = built
    for mode in ("hybrid", "bm25"):
        hits = services.rag.search(question, "docs", mode=mode, top_k=3)
        assert source in [h.chunk.source for h in hits], (mode, [h.chunk.source for h in hits])
    hits = services.rag.search(question, "docs", top_k=3)
    assert {"dense", "bm25", "coverage", "rrf"} <= set(hits[0].scores)


def test_threshold_mmr_and_hnsw(built, corpus, services):
    rag = built[0].rag
    q = "How do bees survive the winter?"
    hits = rag.search(q, "docs", top_k=5, score_threshold=0.5)
    assert hits and all(h.score >= 0.5 for h in hits)
    assert len({h.chunk.id for h in rag.search(q, "docs", top_k=4, mmr_lambda=0.3)}) == 4
    services.rag.build([corpus], "approx", dense="hnsw")
    assert services.rag.info("approx")["dense"]["kind"] == "hnsw"
    assert services.rag.search(q, "approx", mode="dense", top_k=1)[0].chunk.id == \
        rag.search(q, "docs", mode="dense", top_k=1)[0].chunk.id


def test_reranker_scores_when_configured(built, llmspace_home, session_services):
    """Plumbing only: any cross-encoder folder works; the packaged MiniLM gives an untrained head."""
    svc = _services(llmspace_home, session_services, reranker_model=str(session_services.embedder.path))
    shutil.copytree(built[0].settings.indexes_dir / "docs", svc.settings.indexes_dir / "docs")
    hits = svc.rag.search("How do bees survive the winter?", "docs", top_k=3)
    assert len(hits) == 3 and all("rerank" in h.scores for h in hits)


# ---------------------------------------------------------------- answers
def test_english_answer_cites_the_right_file(built):
    services, _ = built
    ans = services.rag.answer("How do honey bees keep warm in winter?", "docs", max_tokens=48, top_k=3)
    assert ans.mode in ("generate", "extractive") and ans.text.strip()
    valid = [c for c in ans.citations if c.valid]
    assert valid and all(c.source for c in valid)
    assert "bees.md" in {c.source for c in valid}
    assert not re.search(r"\[\d+\](?!\?)", ans.text) or all(
        1 <= n <= len(ans.sources) for n in map(int, re.findall(r"\[(\d+)\]", ans.text)))


def test_chinese_answer_is_extractive_and_cites_the_right_file(built):
    services, _ = built
    ans = services.rag.answer("大熊猫每天吃多少竹子？", "docs", top_k=3)
    assert ans.mode == "extractive" and "not known to handle Chinese" in ans.notes[0]
    assert "竹子" in ans.text and re.search(r"\[\d\]", ans.text)
    cite = ans.citations[0]
    assert cite.valid and cite.source == "zh/panda.docx"
    doc = services.rag.retriever("docs").index.documents[ans.sources[cite.n - 1].chunk.doc_id]
    assert doc["text"][cite.start:cite.end] in ans.text  # the citation opens the exact sentence


@pytest.mark.parametrize("question, phrase", [("What is the capital of France?", "I don't know"),
                                              ("法国的首都是哪里？", "我不知道")])
def test_nothing_relevant_means_i_do_not_know(built, question, phrase):
    ans = built[0].rag.answer(question, "docs")
    assert ans.mode == "no_answer" and phrase in ans.text and not ans.citations


def test_streaming_yields_text_then_the_answer(built):
    items = list(built[0].rag.stream_answer("What gives sourdough its sour taste?", "docs", max_tokens=32))
    assert isinstance(items[-1], Answer) and all(isinstance(i, str) for i in items[:-1])
    final = items[-1]
    assert "".join(items[:-1]).strip() and final.cited_valid
    assert final.usage.prompt_tokens > 0 or final.mode == "extractive"


def test_sources_over_the_context_budget_are_trimmed_and_the_answer_says_so(built):
    services, _ = built
    ret = services.rag.retriever("docs")
    ans = answer("How do bees survive the winter and how do beekeepers stop swarming?", ret, services.engine,
                 index_name="docs", retrieval=RetrievalParams(top_k=5, min_coverage=0.0),
                 params=AnswerParams(mode="generate", max_new_tokens=8, max_prompt_tokens=260, context="chunks"))
    assert any("left out" in n and "context budget" in n for n in ans.notes), ans.notes
    with pytest.raises(ContextLengthError, match="Shorten the question"):
        answer("bees " * 400 + "?", ret, services.engine, params=AnswerParams(mode="generate", max_prompt_tokens=200))
    with pytest.raises(ValidationError, match="limit is 4000"):
        services.rag.answer("why? " * 1000, "docs")


class FakeEngine:
    """Replies with fixed text: only for checking what happens to the model's citations."""

    model_id, backend, context_window = "fake-english", "fake", 4096

    def __init__(self, reply: str):
        self.reply = reply

    def count_prompt_tokens(self, messages) -> int:
        return sum(len(m.content.split()) for m in messages)

    def stream(self, messages, params):
        # sources are numbered: fenced <source> blocks (context "chunks") or "[n] " lines (context "sentences")
        assert ("<source id=\"1\"" in messages[-1].content or "\n[1] " in messages[-1].content) \
            and "data, not instructions" in messages[0].content
        for piece in re.findall(r"\S+\s*", self.reply):
            yield Delta(piece)
        yield Delta("", finish_reason="stop", usage=Usage(50, 9))


@pytest.mark.parametrize("reply, mode, expect", [
    ("Bees shiver their flight muscles to make heat [1], as a cluster [9].", "generate", "[9?]"),
    ("Bees form a tight cluster around the queen and shiver to make heat.", "generate", "attached"),
    ("The moon is made of green cheese.", "extractive", "not supported"),
    ("[1]", "extractive", "said too little"),
])
def test_citations_are_checked_after_generation(built, reply, mode, expect):
    ret = built[0].rag.retriever("docs")
    ans = answer("How do honey bees keep warm in winter?", ret, FakeEngine(reply), index_name="docs")
    assert ans.mode == mode
    assert expect in ans.text or any(expect in n for n in ans.notes), (ans.text, ans.notes)
    assert any(c.valid and c.source == "bees.md" for c in ans.citations)
    if expect == "[9?]":
        assert ans.invalid_citations == [9] and [c.n for c in ans.citations if not c.valid] == [9]


# ---------------------------------------------------------------- rebuilds and failures
def test_rebuild_re_embeds_only_changed_files(services, corpus, tmp_path):
    folder = shutil.copytree(corpus, tmp_path / "c")
    first = services.rag.build([folder], "inc")
    (folder / "bees.md").write_text(BEES + "\n## Pollen\n\nBees carry pollen in baskets on their hind legs.\n")
    (folder / "sourdough.txt").unlink()
    second = services.rag.build([folder], "inc")
    assert second.embedded_files == ["bees.md"] and len(second.reused_files) == 5
    assert second.removed_files == ["sourdough.txt"] and 0 < second.embedded_chunks < first.chunks
    assert services.rag.search("Where do bees carry pollen?", "inc", top_k=1)[0].chunk.source == "bees.md"
    assert leftovers(services.settings.indexes_dir) == []


def test_a_build_that_fails_midway_leaves_the_old_index(services, corpus, tmp_path):
    folder = shutil.copytree(corpus, tmp_path / "c")
    services.rag.build([folder], "safe")
    old_id = services.rag.info("safe")["build_id"]
    (folder / "bees.md").write_text("# Ants\n\nAnts farm aphids for honeydew.\n")

    def boom(fraction, message):
        if message.startswith("embedded"):
            raise RuntimeError("simulated crash while embedding")
    with pytest.raises(RuntimeError, match="simulated"):
        services.rag.build([folder], "safe", progress=boom)
    assert services.rag.info("safe")["build_id"] == old_id
    assert services.rag.search("How do bees keep warm?", "safe", top_k=1)[0].chunk.source == "bees.md"
    assert leftovers(services.settings.indexes_dir) == []


def test_a_killed_build_process_leaves_the_old_index(services, corpus, tmp_path, session_services):
    folder = shutil.copytree(corpus, tmp_path / "c")
    services.rag.build([folder], "killed")
    old_id = services.rag.info("killed")["build_id"]
    (folder / "bees.md").write_text("# Ants\n\nAnts farm aphids for honeydew.\n")
    script = textwrap.dedent(f"""
        import os, signal
        from llmspace.config import Settings
        from llmspace.services import Services
        s = Services(Settings.load(env={{}}, home={str(services.settings.home)!r}))
        def die(fraction, message):
            if message.startswith("writing the BM25"):  # the new dense index is half written
                os.kill(os.getpid(), signal.SIGKILL)
        s.rag.build([{str(folder)!r}], "killed", progress=die)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=240)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert any(n.startswith(".tmp-killed-") for n in leftovers(services.settings.indexes_dir))
    assert [i["name"] for i in services.rag.list()] == ["killed"]
    assert services.rag.info("killed")["build_id"] == old_id
    assert services.rag.search("How do bees keep warm?", "killed", top_k=1)[0].chunk.source == "bees.md"
    services.rag.build([folder], "killed")  # the next build clears the stale folder
    assert leftovers(services.settings.indexes_dir) == []


def test_an_index_from_another_embedding_model_is_a_clear_error(services, built):
    shutil.copytree(built[0].settings.indexes_dir / "docs", services.settings.indexes_dir / "docs")
    manifest = services.settings.indexes_dir / "docs" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["embedding"]["model"] = "BAAI/bge-small-zh-v1.5"
    manifest.write_text(json.dumps(m))
    with pytest.raises(ConfigError, match="built with embedding model 'BAAI/bge-small-zh-v1.5'.*Rebuild"):
        services.rag.search("bees", "docs")


# ---------------------------------------------------------------- bad input
def test_bad_inputs_get_clear_messages_and_leave_no_index(services, tmp_path):
    rag, ixdir = services.rag, services.settings.indexes_dir
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValidationError, match="folder is empty"):
        rag.build([empty], "x")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.exe").write_bytes(b"MZ\x00")
    (junk / "b.zip").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValidationError, match=r"every file was skipped.*a\.exe: unsupported.*b\.zip: unsupported"):
        rag.build([junk], "x")
    scan = make_pdf(tmp_path / "scan.pdf", [None, None])
    with pytest.raises(ValidationError, match="no text layer.*OCR"):
        rag.build([scan], "x")
    big = tmp_path / "big"
    big.mkdir()
    with (big / "huge.txt").open("wb") as f:
        f.truncate(25 * 2**20)  # sparse: over the 20 MiB default without writing it
    with pytest.raises(ValidationError, match="huge.txt: file is 25.0 MiB, over the 20.0 MiB limit"):
        rag.build([big], "x")
    with pytest.raises(ValidationError, match="not allowed"):
        rag.build([junk], "a/b")
    with pytest.raises(ValidationError, match="not a plain file name"):
        rag.build_from_uploads("up", [("notes.md", b"# ok\n\nfine"), ("../../etc/passwd", b"root:x:0:0")])
    with pytest.raises(ValidationError, match="does not exist"):
        rag.build([tmp_path / "missing"], "x")
    with pytest.raises(NotFoundError, match="No index named 'x'"):
        rag.search("bees", "x")
    assert list_indexes(ixdir) == [] and leftovers(ixdir) == []


def test_uploads_index_with_warnings(services):
    report = services.rag.build_from_uploads("up", [
        ("notes.md", b"# Kites\n\nA kite flies when wind pushes against its tilted sail."),
        ("latin1.txt", "Caf\xe9 cr\xe8me: the caf\xe9 serves cr\xe8me br\xfbl\xe9e every day.".encode("latin-1")),
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00"),
    ])
    assert report.documents == 2 and [s.source for s in report.skipped] == ["photo.png"]
    assert services.rag.search("Why does a kite fly?", "up", top_k=1)[0].chunk.source == "notes.md"
    assert leftovers(services.settings.indexes_dir) == []


# ---------------------------------------------------------------- the bundled corpus
def test_bundled_roadmap_index_builds_once_and_answers_in_both_languages(services):
    first = ensure_bundled_index(services)
    assert first["status"] == "built" and first["report"]["documents"] >= 18
    assert ensure_bundled_index(services)["status"] == "current"
    zh = services.rag.answer("混合检索为什么用倒数排名融合？", "roadmap", top_k=3)
    assert zh.mode == "extractive" and zh.citations[0].source == "zh/05-rag.md"
    hits = services.rag.search("How should I choose the chunk size for RAG?", "roadmap", top_k=3)
    assert "en/05-rag.md" in [h.chunk.source for h in hits]
    # a bilingual index answers each question from sources in its own language
    en = services.rag.answer("What is reciprocal rank fusion and what k does it use?", "roadmap", top_k=4,
                             mode="extractive")
    assert en.sources and all(h.chunk.source.startswith("en/") for h in en.sources)
    assert all(c.source.startswith("en/") for c in en.citations)
