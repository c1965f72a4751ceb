"""Ingest: files and folders in, ``Document`` objects out, with a list of what was
skipped and why.

Formats: Markdown and plain text (encoding detected), HTML (tags dropped,
headings kept as Markdown ``#`` so the chunker sees the structure), PDF (the
text layer, page by page), DOCX (paragraphs, heading styles kept as ``#``).
A file that cannot be read (binary, unsupported type, too big, no PDF text
layer, undetectable encoding) is skipped with a reason, never fatal on its own;
the build fails only when nothing at all is left. Identical content under two
names is kept once (the second is listed as a duplicate).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable

from llmspace.errors import ValidationError
from llmspace.rag.text import detect_lang

SUPPORTED = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
             ".html": "html", ".htm": "html", ".pdf": "pdf", ".docx": "docx"}
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_FILES = 200  # per upload request (the HTTP route refuses the next one before reading it)
MAX_FILES = 10_000


@dataclass
class Document:
    doc_id: str  # first 16 hex digits of the content's sha256: same bytes, same id
    source: str  # path relative to the indexed root (posix), or the upload name
    title: str
    text: str  # extracted text; chunk spans index into it
    format: str  # markdown | text | html | pdf | docx
    sha256: str
    size: int  # bytes on disk
    encoding: str | None = None
    lang: str = "en"
    page_starts: list[int] = field(default_factory=list)  # PDF: offset in text where page i+1 starts

    def page_at(self, offset: int) -> int | None:
        if not self.page_starts:
            return None
        page = 1
        for i, start in enumerate(self.page_starts):
            if offset >= start:
                page = i + 1
        return page


@dataclass
class Skipped:
    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class IngestResult:
    documents: list[Document]
    skipped: list[Skipped] = field(default_factory=list)
    duplicates: list[Skipped] = field(default_factory=list)  # reason names the kept copy


class SkipFile(Exception):
    """This file cannot be indexed; the message says why (shown to the user)."""


# ---------------------------------------------------------------- discovery
def discover(paths: Iterable[Path | str]) -> list[tuple[Path, str]]:
    """Every file under ``paths`` as ``(path, source)``; ``source`` is relative to
    the folder given (or the file name), posix-style. Hidden files and folders
    are left out. Raises ``ValidationError`` for a path that does not exist."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.exists():
            raise ValidationError(f"{root} does not exist. Give a file or a folder of documents.", param="path")
        if root.is_file():
            found.append((root, root.name))
            continue
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                continue
            found.append((p, rel.as_posix()))
            if len(found) > MAX_FILES:
                raise ValidationError(f"More than {MAX_FILES} files under {root}; index a smaller folder.",
                                      param="path")
    return found


def ingest(paths: Iterable[Path | str], max_file_bytes: int = MAX_FILE_BYTES) -> IngestResult:
    """Read every supported file under ``paths``."""
    result = IngestResult(documents=[])
    seen: dict[str, str] = {}  # sha256 -> source kept
    for path, source in discover(paths):
        try:
            doc = load_file(path, source, max_file_bytes=max_file_bytes)
        except SkipFile as exc:
            result.skipped.append(Skipped(source, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a parser's surprise (pypdf's LimitReachedError, ...) skips one file
            result.skipped.append(Skipped(source, f"cannot read the file ({type(exc).__name__}: {exc})"))
            continue
        if doc.sha256 in seen:
            result.duplicates.append(Skipped(source, f"same content as {seen[doc.sha256]}"))
            continue
        seen[doc.sha256] = source
        result.documents.append(doc)
    return result


# ---------------------------------------------------------------- one file
def load_file(path: Path, source: str, max_file_bytes: int = MAX_FILE_BYTES) -> Document:
    """One file as a ``Document``; raises ``SkipFile`` with the reason."""
    fmt = SUPPORTED.get(path.suffix.lower())
    if fmt is None:
        kind = path.suffix.lower() or "no extension"
        raise SkipFile(f"unsupported file type ({kind}); supported: {', '.join(sorted(set(SUPPORTED)))}")
    size = path.stat().st_size
    if size > max_file_bytes:
        raise SkipFile(f"file is {size / 2**20:.1f} MiB, over the {max_file_bytes / 2**20:.1f} MiB limit")
    if size == 0:
        raise SkipFile("empty file")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    encoding = None
    page_starts: list[int] = []
    if fmt in ("markdown", "text", "html"):
        text, encoding = decode_text(data)
        if fmt == "html":
            text = html_to_text(text)
    elif fmt == "pdf":
        text, page_starts = pdf_to_text(path)
    else:
        text = docx_to_text(path)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise SkipFile("no text in the file")
    return Document(doc_id=sha[:16], source=source, title=guess_title(text, fmt, path), text=text, format=fmt,
                    sha256=sha, size=size, encoding=encoding, lang=detect_lang(text[:20000]),
                    page_starts=page_starts)


def decode_text(data: bytes) -> tuple[str, str]:
    """Bytes to text: UTF-8 (with or without BOM), UTF-16 with BOM, else the
    encoding charset-normalizer detects (GBK, Big5, Latin-1, ...)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    if b"\x00" in data[:8192]:
        raise SkipFile("binary file (contains NUL bytes); not text")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise SkipFile("cannot detect the text encoding; save the file as UTF-8")
    text = str(best)
    bad = sum(1 for c in text[:5000] if c == "\ufffd" or (ord(c) < 32 and c not in "\n\r\t\f"))
    if bad > max(3, len(text[:5000]) // 50):
        raise SkipFile(f"does not look like text (decoded as {best.encoding}); save it as UTF-8")
    return text, best.encoding


def guess_title(text: str, fmt: str, path: Path) -> str:
    m = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.M)
    if m:
        return m.group(1).strip()
    return path.stem.replace("_", " ").replace("-", " ").strip() or path.name


# ---------------------------------------------------------------- formats
class _HTMLText(HTMLParser):
    BLOCK = {"p", "div", "section", "article", "br", "li", "tr", "table", "ul", "ol", "pre", "blockquote",
             "header", "footer", "main", "nav", "aside", "dd", "dt", "figure", "hr"}
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self.skip_depth:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if parser.title.strip() and not re.search(r"^#\s", text, re.M):
        text = f"# {parser.title.strip()}\n\n{text}"
    return text


def pdf_to_text(path: Path) -> tuple[str, list[int]]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError  # every pypdf error, not only PdfReadError (LimitReachedError is not one)

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception:  # noqa: BLE001 - any failure means we cannot read it
                raise SkipFile("encrypted PDF; save a decrypted copy") from None
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except SkipFile:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise SkipFile(f"cannot read the PDF ({type(exc).__name__}: {exc})") from None
    if not any(pages):
        raise SkipFile(f"PDF has no text layer ({len(pages)} page(s), scanned images?); run OCR on it first "
                       "(e.g. `ocrmypdf in.pdf out.pdf`) and index the result")
    text, starts = "", []
    for page_text in pages:
        if text:
            text += "\n\n"
        starts.append(len(text))
        text += page_text
    return text, starts


def docx_to_text(path: Path) -> str:
    try:
        import docx
    except ImportError:  # pragma: no cover - a declared dependency
        raise SkipFile("reading .docx needs python-docx: pip install python-docx") from None
    try:
        document = docx.Document(str(path))
    except Exception as exc:  # noqa: BLE001 - python-docx raises many kinds for a bad file
        raise SkipFile(f"cannot read the .docx file ({type(exc).__name__})") from None
    lines: list[str] = []
    for para in document.paragraphs:
        t = para.text.strip()
        if not t:
            continue
        style = (para.style.name or "").lower() if para.style is not None else ""
        m = re.match(r"heading (\d)", style)
        if style == "title":
            lines.append(f"# {t}")
        elif m:
            lines.append("#" * min(6, int(m.group(1))) + " " + t)
        else:
            lines.append(t)
    return "\n\n".join(lines)


# ---------------------------------------------------------------- uploads
_SAFE_NAME = re.compile(r"^[^/\\\x00-\x1f]{1,200}$")
# Windows refuses these as file names in any folder, with any extension ("NUL.md" is the NUL device).
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", *(f"{p}{i}" for p in ("COM", "LPT")
                                                                        for i in (*"123456789", "¹", "²", "³"))}
_WINDOWS_BAD_CHARS = set('<>:"|?*')


def safe_upload_name(name: str) -> str:
    """An uploaded file's name, checked: no folders, no '..', no control
    characters, and a plain name on Windows too (no drive such as ``D:evil.md``,
    no ``\\``, no reserved device name such as ``CON`` or ``NUL.md``, no trailing
    dot or space, none of ``<>:"|?*``). Raises ``ValidationError`` (never silently
    rewrites a name, so the user sees why ``../../etc/passwd`` was refused)."""
    if not name or not _SAFE_NAME.match(name) or name in (".", "..") or name.startswith("."):
        raise ValidationError(f"Upload name {name!r} is not a plain file name (no folders, '..', leading dots "
                              "or control characters); rename the file and upload it again.", param="files")
    from pathlib import PureWindowsPath

    win = PureWindowsPath(name)
    why = None
    if win.drive or win.root or len(win.parts) != 1 or win.name != name:
        why = "it names a drive or folder on Windows"
    elif _WINDOWS_BAD_CHARS & set(name):
        why = 'it contains one of <>:"|?* (not allowed on Windows)'
    elif name[-1] in ". ":
        why = "it ends with a dot or space (Windows drops them)"
    elif name.split(".")[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        why = "it is a reserved device name on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)"
    if why:
        raise ValidationError(f"Upload name {name!r} is not a plain file name: {why}; rename the file and upload "
                              "it again.", param="files")
    return name
