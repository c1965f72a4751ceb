"""Eval sets: JSONL files of cases, validated whole before anything runs.

The format is documented by ``llmspace/data/evals/schema.json``; this module
is its executable form (no ``jsonschema`` dependency, and messages that name
file, line and field). Every problem in the file is collected, so one run of
``llmspace eval run`` shows them all.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from llmspace.errors import LLMSpaceError

ASSERTION_TYPES = ("contains", "any_of", "not_contains", "regex", "equals", "must_cite", "max_tokens")
CASE_KEYS = ("id", "question", "messages", "index", "gold_sources", "assertions", "tags", "reference", "notes")
ASSERTION_KEYS = ("type", "value", "case_sensitive")
MESSAGE_ROLES = ("system", "user", "assistant")
MAX_ERRORS_SHOWN = 20


class EvalSetError(LLMSpaceError):
    """An eval set cannot be used. ``file`` and ``line`` point at the (first) problem."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 problems: list[str] | None = None):
        super().__init__(message, param="eval_set")
        self.file = file
        self.line = line
        self.problems = problems or [message]


@dataclass
class Assertion:
    type: str
    value: object = None
    case_sensitive: bool = False

    def to_dict(self) -> dict:
        d: dict = {"type": self.type}
        if self.value is not None:
            d["value"] = self.value
        if self.case_sensitive:
            d["case_sensitive"] = True
        return d


@dataclass
class EvalCase:
    id: str
    assertions: list[Assertion]
    question: str | None = None
    messages: list[dict] | None = None
    index: str | None = None
    gold_sources: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    reference: str | None = None
    notes: str | None = None
    line: int = 0  # line in the file, for messages

    @property
    def kind(self) -> str:
        return "rag" if self.index else "chat"

    @property
    def prompt_text(self) -> str:
        """The question, or the last user message of a conversation."""
        if self.question is not None:
            return self.question
        return next(m["content"] for m in reversed(self.messages or []) if m["role"] == "user")

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "line" and v not in (None, [])}
        d["assertions"] = [a.to_dict() for a in self.assertions]
        return d


@dataclass
class EvalSet:
    name: str
    path: str
    sha256: str
    cases: list[EvalCase]

    @property
    def indexes(self) -> set[str]:
        return {c.index for c in self.cases if c.index}

    def select(self, *, tags: list[str] | None = None, ids: list[str] | None = None,
               limit: int | None = None) -> "EvalSet":
        """A subset (by any of ``tags``, by case id or id glob), same name and hash."""
        import fnmatch

        cases = self.cases
        if tags:
            cases = [c for c in cases if set(tags) & set(c.tags)]
        if ids:
            cases = [c for c in cases if any(fnmatch.fnmatchcase(c.id, p) for p in ids)]
        if limit is not None:
            cases = cases[:limit]
        if not cases:
            raise EvalSetError(f"No case of {self.path} matches the filter (tags={tags}, ids={ids}).",
                               file=self.path)
        return EvalSet(self.name, self.path, self.sha256, cases)


def bundled_sets() -> dict[str, Path]:
    """Eval sets shipped in the package: name -> path."""
    folder = Path(str(resources.files("llmspace") / "data" / "evals"))
    return {p.stem: p for p in sorted(folder.glob("*.jsonl"))}


def schema_path() -> Path:
    return Path(str(resources.files("llmspace") / "data" / "evals" / "schema.json"))


def resolve_set(name_or_path: str | None) -> Path:
    """``None`` -> the bundled starter set; a bundled set's name; or a file path."""
    bundled = bundled_sets()
    if name_or_path is None:
        name_or_path = "starter"
    if name_or_path in bundled:
        return bundled[name_or_path]
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise EvalSetError(f"Eval set {name_or_path!r} not found: no such file, and no bundled set of that name "
                           f"(bundled: {', '.join(bundled) or 'none'}).", file=str(path))
    if path.is_dir():
        raise EvalSetError(f"{path} is a folder; give a .jsonl file.", file=str(path))
    return path


def load_eval_set(name_or_path: str | Path | None = None, *, known_indexes: set[str] | None = None) -> EvalSet:
    """Read and validate a whole set. ``known_indexes``, when given, is checked
    against every case's ``index``. Raises ``EvalSetError`` listing every problem."""
    path = resolve_set(str(name_or_path) if name_or_path is not None else None)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EvalSetError(f"Cannot read eval set {path}: {exc.strerror}.", file=str(path)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise EvalSetError(f"{path}:{line}: not UTF-8 text. Save the file as UTF-8.", file=str(path),
                           line=line) from None
    problems: list[tuple[int, str]] = []
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append((lineno, f"not valid JSON ({exc.msg} at column {exc.colno}); "
                                     "each line must be one JSON object"))
            continue
        errs, case = parse_case(obj, lineno)
        if case is not None:
            if case.id in seen:
                errs.append(f"id {case.id!r} is already used on line {seen[case.id]}")
            seen.setdefault(case.id, lineno)
            if known_indexes is not None and case.index and case.index not in known_indexes:
                known = ", ".join(sorted(known_indexes)) or "none"
                errs.append(f"index {case.index!r} does not exist (known: {known}); "
                            "build it with `llmspace index build PATH --name NAME` or fix the name")
        problems.extend((lineno, e) for e in errs)
        if case is not None and not errs:
            cases.append(case)
    if problems:
        shown = [f"{path}:{ln}: {msg}" for ln, msg in problems[:MAX_ERRORS_SHOWN]]
        more = len(problems) - len(shown)
        msg = "Eval set is invalid; nothing was run.\n  " + "\n  ".join(shown)
        if more:
            msg += f"\n  ... and {more} more problem(s)"
        raise EvalSetError(msg, file=str(path), line=problems[0][0], problems=shown)
    if not cases:
        raise EvalSetError(f"{path}: the eval set is empty (no case lines). Add one JSON case per line; "
                           f"see {schema_path()}.", file=str(path), line=1)
    return EvalSet(path.stem, str(path), hashlib.sha256(raw).hexdigest(), cases)


def parse_case(obj: object, lineno: int = 0) -> tuple[list[str], EvalCase | None]:
    """Validate one decoded line. Returns (problems, case or None)."""
    if not isinstance(obj, dict):
        return [f"expected a JSON object, got {type(obj).__name__}"], None
    errs: list[str] = []
    unknown = [k for k in obj if k not in CASE_KEYS]
    if unknown:
        errs.append(f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(CASE_KEYS)}")
    cid = obj.get("id")
    if not isinstance(cid, str) or not cid.strip():
        errs.append("missing `id` (a non-empty string)")
    q, msgs = obj.get("question"), obj.get("messages")
    if q is None and msgs is None:
        errs.append("case has no `question` (or `messages`)")
    elif q is not None and msgs is not None:
        errs.append("give `question` or `messages`, not both")
    elif q is not None and (not isinstance(q, str) or not q.strip()):
        errs.append("`question` must be a non-empty string")
    elif msgs is not None:
        errs.extend(_check_messages(msgs))
        if obj.get("index"):
            errs.append("`messages` cases are chat only; use `question` with `index`")
    index = obj.get("index")
    if index is not None and (not isinstance(index, str) or not index.strip()):
        errs.append("`index` must be a non-empty string")
    for key in ("gold_sources", "tags"):
        v = obj.get(key, [])
        if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
            errs.append(f"`{key}` must be a list of non-empty strings")
    for key in ("reference", "notes"):
        if key in obj and not isinstance(obj[key], str):
            errs.append(f"`{key}` must be a string")
    assertions: list[Assertion] = []
    raw_asserts = obj.get("assertions")
    if raw_asserts is None:
        errs.append("missing `assertions` (a list; may be empty)")
    elif not isinstance(raw_asserts, list):
        errs.append("`assertions` must be a list")
    else:
        for i, a in enumerate(raw_asserts):
            a_errs, parsed = parse_assertion(a)
            errs.extend(f"assertions[{i}]: {e}" for e in a_errs)
            if parsed is not None:
                assertions.append(parsed)
        if any(a.type == "must_cite" for a in assertions) and not index:
            errs.append("a `must_cite` assertion needs an `index` (only RAG answers cite sources)")
        if any(a.type == "must_cite" and a.value == "gold" for a in assertions) and not obj.get("gold_sources"):
            errs.append("`must_cite: \"gold\"` needs `gold_sources`")
    if errs:
        return errs, None
    return [], EvalCase(id=cid, assertions=assertions, question=q, messages=msgs, index=index,
                        gold_sources=list(obj.get("gold_sources", [])), tags=list(obj.get("tags", [])),
                        reference=obj.get("reference"), notes=obj.get("notes"), line=lineno)


def _check_messages(msgs: object) -> list[str]:
    if not isinstance(msgs, list) or not msgs:
        return ["`messages` must be a non-empty list of {role, content}"]
    errs = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            errs.append(f"messages[{i}] must be an object with exactly `role` and `content`")
        elif m["role"] not in MESSAGE_ROLES:
            errs.append(f"messages[{i}].role is {m['role']!r}; expected one of {', '.join(MESSAGE_ROLES)}")
        elif not isinstance(m["content"], str) or not m["content"].strip():
            errs.append(f"messages[{i}].content must be a non-empty string")
    if not errs and msgs[-1]["role"] != "user":
        errs.append("the last message must be from the user")
    return errs


def parse_assertion(a: object) -> tuple[list[str], Assertion | None]:
    if not isinstance(a, dict):
        return ["must be an object like {\"type\": \"contains\", \"value\": \"...\"}"], None
    unknown = [k for k in a if k not in ASSERTION_KEYS]
    if unknown:
        return [f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ASSERTION_KEYS)}"], None
    t, v = a.get("type"), a.get("value")
    if t not in ASSERTION_TYPES:
        return [f"unknown assertion type {t!r}; known: {', '.join(ASSERTION_TYPES)}"], None
    cs = a.get("case_sensitive", False)
    if not isinstance(cs, bool):
        return ["`case_sensitive` must be true or false"], None
    if t in ("contains", "not_contains", "equals", "regex"):
        if not isinstance(v, str) or not v:
            return [f"{t} needs a non-empty string `value`"], None
        if t == "regex":
            try:
                re.compile(v)
            except re.error as exc:
                return [f"regex {v!r} does not compile: {exc}"], None
    elif t == "any_of":
        if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
            return ["any_of needs `value`: a non-empty list of non-empty strings"], None
    elif t == "max_tokens":
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            return ["max_tokens needs an integer `value` >= 1"], None
    elif t == "must_cite":
        ok = v is None or v is True or v == "gold" or (
            isinstance(v, list) and v and all(isinstance(s, str) and s for s in v))
        if not ok:
            return ["must_cite `value` must be true, \"gold\", or a list of sources"], None
    return [], Assertion(t, v, cs)
