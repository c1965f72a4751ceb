"""RAG logic without models: text analysis, chunking, ingest of every format and
bad file, citation checking, names. Fast (no embedder, no chat model)."""

from __future__ import annotations

import pytest
from test_rag_docs import make_docx, make_pdf

from llmspace.errors import ValidationError
from llmspace.rag import chunking, citations, ingest, text
from llmspace.rag.index import validate_name
from llmspace.rag.types import Chunk, SearchHit


# ---------------------------------------------------------------- text
def test_language_and_terms():
    assert text.detect_lang("什么是检索增强生成（RAG）？") == "zh"
    assert text.detect_lang("What is retrieval-augmented generation?") == "en"
    terms = text.analyze("What is Retrieval-Augmented Generation? It uses llama.cpp.")
    assert {"retrieval-augmented", "retrieval", "augmented", "generation", "llama.cpp"} <= set(terms)
    assert "what" not in terms and "is" not in terms  # stop words
    zh = text.analyze("混合检索把向量检索和关键词检索的结果融合起来。")
    assert "检索" in zh and "向量" in zh and "的" not in zh


def test_sentences_split_on_chinese_and_english_punctuation():
    t = "第一句。第二句！第三句？第四句；结尾\nFirst one. Second one! Pi is 3.14 here. e.g. file.md stays"
    got = [t[a:b] for a, b in text.sentence_spans(t)]
    assert got[:4] == ["第一句。", "第二句！", "第三句？", "第四句；"]
    assert "Pi is 3.14 here." in got  # no split inside numbers
    assert all(t[a:b] == t[a:b].strip() for a, b in text.sentence_spans(t))


# ---------------------------------------------------------------- chunking
def _doc(body: str, name: str = "d.md") -> ingest.Document:
    return ingest.Document(doc_id="abc", source=name, title="T", text=body, format="markdown", sha256="0" * 64,
                           size=len(body))


def test_chunks_follow_headings_and_keep_exact_spans():
    body = ("# Guide\n\nIntro sentence here.\n\n## Install\n\nRun the installer. Then reboot.\n\n"
            "```\n# not a heading\n```\n\n### Linux\n\nUse apt to install it.\n\n## Use\n\nOpen the app.\n")
    chunks = chunking.chunk_document(_doc(body), chunking.ChunkerSettings(chunk_tokens=64, overlap_tokens=8))
    assert [c.heading for c in chunks] == ["Guide", "Guide > Install", "Guide > Install > Linux", "Guide > Use"]
    for c in chunks:
        assert body[c.start:c.end] == c.text
    assert "# not a heading" in chunks[1].text  # code fences are not sections


def test_chunk_size_and_overlap_in_tokens():
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60)]
    body = " ".join(sentences)
    s = chunking.ChunkerSettings(chunk_tokens=40, overlap_tokens=12)
    chunks = chunking.chunk_document(_doc(body), s)
    assert len(chunks) > 5
    counts = chunking.approx_counter([c.text for c in chunks])
    assert max(counts) <= 40
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # consecutive chunks overlap
        assert b.start > a.start  # and always advance


def test_chinese_chunks_break_at_chinese_punctuation():
    body = "".join(f"这是第{i}个句子，它讲的是检索增强生成里的一个细节。" for i in range(40))
    chunks = chunking.chunk_document(_doc(body), chunking.ChunkerSettings(chunk_tokens=60, overlap_tokens=10))
    assert len(chunks) > 3
    assert all(c.text.endswith("。") for c in chunks)
    assert all(c.lang == "zh" for c in chunks)


def test_a_sentence_longer_than_a_chunk_is_cut():
    body = "word " * 500
    chunks = chunking.chunk_document(_doc(body.strip() + "."), chunking.ChunkerSettings(chunk_tokens=50,
                                                                                         overlap_tokens=5))
    assert len(chunks) >= 10 and max(chunking.approx_counter([c.text for c in chunks])) <= 50


def test_chunker_settings_are_validated():
    with pytest.raises(ValidationError, match="overlap_tokens"):
        chunking.ChunkerSettings(chunk_tokens=64, overlap_tokens=40)


# ---------------------------------------------------------------- ingest
def test_ingest_every_format_and_skip_the_rest(tmp_path):
    (tmp_path / "a.md").write_text("# Bees\n\nBees make honey.", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes("# 茶\n\n中国是茶的故乡，绿茶和红茶都很有名。".encode("gbk") * 3)
    (tmp_path / "c.html").write_text("<html><head><title>Volcano</title><script>x()</script></head>"
                                     "<body><h2>Lava</h2><p>Lava is molten rock.</p></body></html>")
    make_pdf(tmp_path / "d.pdf", ["Solar panels turn sunlight into power.", "Page two text."])
    make_pdf(tmp_path / "scan.pdf", [None])
    make_docx(tmp_path / "e.docx", "Pandas", ["Pandas eat bamboo."])
    (tmp_path / "f.exe").write_bytes(b"MZ\x00\x00binary")
    (tmp_path / "g.txt").write_bytes(b"\x00\x01\x02binary pretending to be text")
    (tmp_path / "dup.md").write_text("# Bees\n\nBees make honey.", encoding="utf-8")
    (tmp_path / "big.txt").write_text("x" * 200_000)
    (tmp_path / ".hidden.md").write_text("secret")
    res = ingest.ingest([tmp_path], max_file_bytes=100_000)
    docs = {d.source: d for d in res.documents}
    assert set(docs) == {"a.md", "b.txt", "c.html", "d.pdf", "e.docx"}
    assert docs["b.txt"].encoding.lower().replace("_", "") in ("gb2312", "gbk", "gb18030")
    assert "绿茶" in docs["b.txt"].text and docs["b.txt"].lang == "zh"
    assert "## Lava" in docs["c.html"].text and "x()" not in docs["c.html"].text
    assert docs["c.html"].title == "Volcano"
    assert docs["d.pdf"].page_starts == [0, docs["d.pdf"].text.index("Page two")]
    assert docs["d.pdf"].page_at(docs["d.pdf"].text.index("Page two")) == 2
    assert docs["e.docx"].text.startswith("# Pandas")
    reasons = {s.source: s.reason for s in res.skipped}
    assert "no text layer" in reasons["scan.pdf"] and "OCR" in reasons["scan.pdf"]
    assert "unsupported file type (.exe)" in reasons["f.exe"]
    assert "binary" in reasons["g.txt"]
    assert "over the" in reasons["big.txt"]
    assert [(d.source, d.reason) for d in res.duplicates] == [("dup.md", "same content as a.md")]


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValidationError, match="does not exist"):
        ingest.ingest([tmp_path / "nope"])


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/b.md", "..", ".bashrc", "x\\y.md", "a\x00.md"])
def test_upload_names_with_paths_are_refused(name):
    with pytest.raises(ValidationError, match="not a plain file name"):
        ingest.safe_upload_name(name)


def test_plain_upload_names_pass():
    assert ingest.safe_upload_name("笔记 2024.md") == "笔记 2024.md"


@pytest.mark.parametrize("name", ["D:evil.md", "C:", "c:notes.txt", "CON", "nul.md", "Com1.txt", "LPT9", "aux .md",
                                  "notes.md.", "notes.md ", "a<b.md", "what?.md", "a|b.md", 'say"hi".md', "x*.md"])
def test_upload_names_unsafe_on_windows_are_refused(name, tmp_path):
    # on Windows, staging / "D:evil.md" is D:evil.md (outside the staging folder) and "NUL.md" is the null device
    with pytest.raises(ValidationError, match="not a plain file name: it"):
        ingest.safe_upload_name(name)


@pytest.mark.parametrize("name", ["console.md", "nullable.txt", "com10.md", "CON-notes.md", "a.b.md", "x (1).pdf"])
def test_upload_names_like_reserved_ones_pass(name):
    assert ingest.safe_upload_name(name) == name


@pytest.mark.parametrize("name", ["a/b", "../x", "", "a" * 65, ".hidden", "a b"])
def test_bad_index_names(name):
    with pytest.raises(ValidationError, match="not allowed"):
        validate_name(name)


# ---------------------------------------------------------------- citations
def _hits(n: int) -> list[SearchHit]:
    return [SearchHit(Chunk(id=f"d:{i}", doc_id="d", source=f"s{i}.md", title="t", heading="h",
                            text=f"text {i}", start=0, end=6), 1.0 / (i + 1), i + 1) for i in range(n)]


def test_citation_markers_are_parsed_in_every_form():
    assert citations.cited_numbers("A [1]. B [2, 3]. C [source 4] D 【5】 E [1][6] [2，7]") == [1, 2, 3, 4, 5, 6, 7]


def test_invalid_citations_are_flagged_not_shown_as_real():
    text, cites, invalid = citations.check_citations("Bees fly [1]. They sing [7]. Both [2, 9].", _hits(2))
    assert invalid == [7, 9]
    assert text == "Bees fly [1]. They sing [7?]. Both [2, 9?]."
    valid = [c for c in cites if c.valid]
    assert [(c.n, c.source) for c in valid] == [(1, "s0.md"), (2, "s1.md")]
    assert {c.n for c in cites if not c.valid} == {7, 9} and all(not c.source for c in cites if not c.valid)


def test_the_support_check_rests_on_the_source_sharing_the_answer_words():
    from llmspace.rag.evidence import score_sentences
    from llmspace.rag.support import check_support

    hits = _hits(3)
    hits[2].chunk.text = "Honey bees cluster together to keep the hive warm in winter."
    ranked = score_sentences("How do bees keep the hive warm?", hits)
    v = check_support("How do bees keep the hive warm?", "Bees cluster to keep the hive warm.", ranked, ranked,
                      [h.chunk.text for h in hits])
    assert v.evidence.n == 3 and v.supported, v


def test_bundled_index_without_a_corpus_reports_it_and_takes_a_one_argument_logger(settings, tmp_path):
    from types import SimpleNamespace

    from llmspace.rag.bundled import ensure_bundled_index

    said = []
    result = ensure_bundled_index(SimpleNamespace(settings=settings), progress=lambda msg: said.append(msg),
                                  corpus=tmp_path / "none")
    assert result["status"] == "no_corpus" and said and said[0].startswith("llmspace: roadmap index")
