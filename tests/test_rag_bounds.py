"""RAG under hostile or careless input: a PDF that breaks the parser, many index names, too many uploads
(issue #9)."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from llmspace.config import Settings
from llmspace.rag import ingest


def _pdf(objs: list[bytes]) -> bytes:
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)


def pdf_that_breaks_pypdf(path: Path) -> Path:
    """A one-page PDF whose font's /ToUnicode map has a 17-byte code: pypdf raises
    ``LimitReachedError``, which is not a ``PdfReadError``."""
    cmap = b"1 beginbfchar <00112233445566778899AABBCCDDEEFF00> <0041> endbfchar"
    content = b"BT /F1 12 Tf <0001> Tj ET"
    path.write_bytes(_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> "
        b"/MediaBox [0 0 612 792] >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream",
    ]))
    return path


def test_a_pdf_that_breaks_the_parser_is_skipped_with_its_reason(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    pdf_that_breaks_pypdf(docs / "broken.pdf")
    (docs / "notes.md").write_text("# Notes\n\nReciprocal rank fusion merges ranked lists.\n")
    result = ingest.ingest([docs])
    assert [d.source for d in result.documents] == ["notes.md"]
    [skipped] = result.skipped
    assert skipped.source == "broken.pdf" and "LimitReachedError" in skipped.reason


@pytest.mark.slow
def test_build_goes_on_past_a_broken_pdf_and_loaded_indexes_are_bounded(llmspace_home, session_services, tmp_path):
    from llmspace.services import Services

    services = Services(Settings.load(rag_cache_size=2))
    services.__dict__["embedder"] = session_services.embedder  # the session's loaded MiniLM
    docs = tmp_path / "docs"
    docs.mkdir()
    pdf_that_breaks_pypdf(docs / "broken.pdf")
    (docs / "notes.md").write_text("# Notes\n\nReciprocal rank fusion merges ranked lists.\n")
    report = services.rag.build([docs], "a")
    assert report.documents == 1 and [s.source for s in report.skipped] == ["broken.pdf"]
    services.rag.build([docs], "b")
    services.rag.build([docs], "c")

    rag = services.rag
    a = rag.retriever("a")
    b = rag.retriever("b")
    assert rag.retriever("a") is a  # cached; "a" is now the most recently used
    rag.retriever("c")
    assert list(rag._cache) == ["a", "c"]  # "b" went: least recently used, past rag_cache_size=2
    assert rag.retriever("b") is not b  # loaded again on demand
    assert len(rag._cache) == 2 and rag.search("rank fusion", "b")[0].chunk.source == "notes.md"


def _multipart_head(boundary: str, n: int) -> bytes:
    parts = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"f{i}.md\"\r\n"
                     f"Content-Type: text/markdown\r\n\r\n# File {i}\n\nText.\r\n".encode() for i in range(n))
    return parts + (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"f{n}.md\"\r\n"
                     "Content-Type: text/markdown\r\n\r\n").encode()


def test_the_file_past_the_upload_limit_is_refused_before_its_bytes_are_read(settings):
    """201 files: the 201st part's headers are sent, its body (declared as 1 GB) never is; the server
    must answer 400 at once rather than wait to read it."""
    from server_helpers import serve

    from llmspace.rag.ingest import MAX_UPLOAD_FILES
    from llmspace.serve.app import create_app
    from llmspace.services import Services

    boundary = uuid.uuid4().hex
    head = _multipart_head(boundary, MAX_UPLOAD_FILES)
    with serve(create_app(Services(settings), with_ui=False)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(f"POST /v1/rag/indexes/many HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                         f"Content-Length: {len(head) + 2**30}\r\n\r\n".encode() + head)
            reply = b""
            while b"\r\n\r\n" not in reply or b"}" not in reply:
                chunk = sock.recv(65536)  # a server waiting for the rest times out here (socket timeout)
                if not chunk:
                    break
                reply += chunk
    status = reply.split(b"\r\n", 1)[0]
    assert b" 400 " in status, reply[:500]
    assert b"Too many files" in reply and b"at most 200 files" in reply
    assert not (settings.indexes_dir / "many").exists()


def test_uploads_are_documented_and_checked(settings):
    from fastapi.testclient import TestClient

    from llmspace.serve.app import create_app
    from llmspace.services import Services

    client = TestClient(create_app(Services(settings), with_ui=False))
    body = client.get("/api/openapi.json").json()["paths"]["/v1/rag/indexes/{name}"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["files"] and schema["properties"]["files"]["maxItems"] == 200
    r = client.post("/v1/rag/indexes/x", data={"files": "not a file"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "files"
    r = client.post("/v1/rag/indexes/x", json={"files": []})
    assert r.status_code == 400 and "multipart form field `files`" in r.json()["error"]["message"]
    r = client.post("/v1/rag/indexes/../x", files=[("files", ("a.md", b"# A\n\ntext"))])
    assert r.status_code in (400, 404)
