"""Eval sets: JSONL files of cases, validated whole before anything runs.

The format is ``CaseModel`` (``llmspace.evals.case_model``); the JSON Schema
``llmspace/data/evals/schema.json`` is generated from it
(``python -m llmspace.evals.schema``). Messages name file, line and
field, and every problem in the file is collected, so one run of
``llmspace eval run`` shows them all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from llmspace.errors import LLMSpaceError
from llmspace.evals.case_model import (  # noqa: F401
    ASSERTION_KEYS,
    ASSERTION_TYPES,
    CASE_KEYS,
    MESSAGE_ROLES,
    CaseModel,
    case_json_schema,
    problems_of,
)

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
    """Validate one decoded line against ``CaseModel``. Returns (problems, case or None)."""
    try:
        m = CaseModel.model_validate(obj)
    except ValidationError as exc:
        return problems_of(exc), None
    return [], EvalCase(id=m.id, assertions=[Assertion(a.type, a.value, a.case_sensitive) for a in m.assertions],
                        question=m.question, messages=[x.model_dump() for x in m.messages] if m.messages else None,
                        index=m.index, gold_sources=list(m.gold_sources), tags=list(m.tags),
                        reference=m.reference, notes=m.notes, line=lineno)

