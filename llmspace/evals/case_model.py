"""The eval-case format as pydantic models: the one source of truth.

``CaseModel`` validates a decoded JSONL line; ``case_json_schema()`` is the
JSON Schema shipped as ``llmspace/data/evals/schema.json`` (regenerate it with
``python -m llmspace.evals.schema``; a test keeps the two equal).
``problems_of`` turns pydantic's errors into the messages ``llmspace eval``
prints after ``file:line:`` -- they name the field and what it must be.

Rules that span fields (question xor messages, must_cite needs an index, ...)
are model validators here and ``if``/``then`` clauses in the schema; two cannot
be said in JSON Schema and are only in the description: the last message must
be from the user, and a regex must compile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError

SCHEMA_ID = "llmspace/eval-case.schema.json"
ASSERTION_TYPES = ("contains", "any_of", "not_contains", "regex", "equals", "must_cite", "max_tokens")
MESSAGE_ROLES = ("system", "user", "assistant")
RULE = "eval_case_rule"  # the error type of every rule below; its message is already the user's message

def _rule(msg: str, **ctx: Any) -> PydanticCustomError:
    """An error whose message is ``msg`` as written (the template only substitutes it)."""
    return PydanticCustomError(RULE, "{msg}", {"msg": msg, **ctx})


NonEmptyStr = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]


def _unique(values: list[str]) -> list[str]:
    dup = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if dup is not None:
        raise _rule(f"lists {dup!r} twice; each entry once")
    return values


UniqueStrs = Annotated[list[NonEmptyStr], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True})]


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _rule(f"regex {pattern!r} does not compile: {exc}") from None
    return pattern


@dataclass(frozen=True)
class ValueRule:
    """What ``value`` must be for some assertion types: validated and described by ``adapter``."""
    types: tuple[str, ...]
    adapter: TypeAdapter
    required: bool
    help: str


VALUE_RULES = (
    ValueRule(("contains", "not_contains", "equals"), TypeAdapter(NonEmptyStr), True,
              "{type} needs a non-empty string `value`"),
    ValueRule(("any_of",), TypeAdapter(Annotated[list[NonEmptyStr], Field(min_length=1)]), True,
              "any_of needs `value`: a non-empty list of non-empty strings"),
    ValueRule(("regex",), TypeAdapter(Annotated[NonEmptyStr, AfterValidator(_compiles), Field(
        description="Python `re` syntax, searched anywhere in the answer; must compile.")]), True,
              "regex needs a non-empty string `value`"),
    ValueRule(("max_tokens",), TypeAdapter(Annotated[int, Field(
        ge=1, description="The answer's completion tokens must not exceed this.")]), True,
              "max_tokens needs an integer `value` >= 1"),
    ValueRule(("must_cite",), TypeAdapter(Annotated[Literal[True, "gold"] | Annotated[
        list[NonEmptyStr], Field(min_length=1)], Field(
        description="true or absent: at least one valid [n] citation; \"gold\": at least one cited source is in "
                    "gold_sources; a list: at least one cited source is in the list.")]), False,
              "must_cite `value` must be true, \"gold\", or a list of sources"),
)
_RULE_OF = {t: r for r in VALUE_RULES for t in r.types}


def _assertion_schema(schema: dict[str, Any]) -> None:
    schema["allOf"] = [
        {"if": {"properties": {"type": {"enum": list(r.types)}}},
         "then": {**({"required": ["value"]} if r.required else {}),
                  "properties": {"value": r.adapter.json_schema()}}}
        for r in VALUE_RULES]


class _Strict(BaseModel):
    # strict: JSON types as written ("true" is not a boolean, 3.0 is not a count)
    model_config = ConfigDict(extra="forbid", strict=True)


class AssertionModel(_Strict):
    model_config = ConfigDict(json_schema_extra=_assertion_schema)

    type: Literal[ASSERTION_TYPES]
    value: Any = None
    case_sensitive: StrictBool = Field(False, description="For contains, any_of, not_contains, equals.")

    @model_validator(mode="after")
    def _value_fits_type(self) -> "AssertionModel":
        rule = _RULE_OF[self.type]
        if self.value is None and not rule.required:
            return self
        try:
            rule.adapter.validate_python(self.value, strict=True)
        except ValidationError as exc:
            own = next((e for e in exc.errors() if e["type"] == RULE), None)
            raise _rule(own["msg"] if own else rule.help.format(type=self.type)) from None
        return self


class MessageModel(_Strict):
    role: Literal[MESSAGE_ROLES]
    content: NonEmptyStr


def _ends_with_user(messages: list[MessageModel]) -> list[MessageModel]:
    if messages[-1].role != "user":
        raise _rule("the last message must be from the user")
    return messages


def _case_schema(schema: dict[str, Any]) -> None:
    schema["description"] = " ".join(CaseModel.__doc__.split())
    must_cite = {"properties": {"type": {"const": "must_cite"}}, "required": ["type"]}
    gold = {"properties": {"type": {"const": "must_cite"}, "value": {"const": "gold"}}, "required": ["type", "value"]}
    schema["oneOf"] = [{"required": ["question"], "not": {"required": ["messages"]}},
                       {"required": ["messages"], "not": {"required": ["question"]}}]
    schema["allOf"] = [
        {"if": {"required": ["messages"]}, "then": {"not": {"required": ["index"]}}},
        {"if": {"properties": {"assertions": {"contains": must_cite}}}, "then": {"required": ["index"]}},
        {"if": {"properties": {"assertions": {"contains": gold}}},
         "then": {"required": ["gold_sources"], "properties": {"gold_sources": {"minItems": 1}}}},
    ]


class CaseModel(_Strict):
    """One line of an llmspace eval set (JSONL: one JSON object per line; blank lines and lines starting
    with // are skipped). Validated by llmspace.evals.cases, which names the file and line of every
    problem before anything runs."""

    model_config = ConfigDict(title="llmspace eval case", json_schema_extra=_case_schema)

    id: NonEmptyStr = Field(max_length=200, description=(
        "Unique within the set; used by `eval diff` to match cases across runs."))
    question: NonEmptyStr | None = Field(None, description=(
        "The user's question (one user message). Give `question` or `messages`, not both."))
    messages: Annotated[list[MessageModel], Field(min_length=1), AfterValidator(_ends_with_user)] | None = Field(
        None, description="A whole conversation (OpenAI-style); the last message must be from the user. "
                          "Only for chat cases (no `index`).")
    index: NonEmptyStr | None = Field(None, description=(
        "RAG index to answer from (e.g. `roadmap`). Without it the case is plain chat through the engine."))
    gold_sources: UniqueStrs = Field(default_factory=list, description=(
        "Documents (source path relative to the index root, e.g. `en/05-rag.md`) or chunk ids (`<doc_id>:<n>`) "
        "that hold the answer. Used for citation precision and context recall@k."))
    assertions: list[AssertionModel] = Field(description=(
        "Checks on the answer; the case passes when all pass (an empty list passes if the answer has no error)."))
    tags: UniqueStrs = Field(default_factory=list, description=(
        "Free labels; the report gives a pass rate per tag (e.g. `zh`, `en`, `rag`, `chat`)."))
    reference: str | None = Field(None, description=(
        "A reference answer (shown in reports, given to the optional judge; `feedback export` fills it from "
        "a thumbs-up answer)."))
    notes: str | None = Field(None, description="Free text for people (e.g. the feedback comment).")

    @model_validator(mode="after")
    def _rules(self) -> "CaseModel":
        problems = []
        if self.question is None and self.messages is None:
            problems.append("case has no `question` (or `messages`)")
        elif self.question is not None and self.messages is not None:
            problems.append("give `question` or `messages`, not both")
        elif self.messages is not None and self.index:
            problems.append("`messages` cases are chat only; use `question` with `index`")
        if any(a.type == "must_cite" for a in self.assertions) and not self.index:
            problems.append("a `must_cite` assertion needs an `index` (only RAG answers cite sources)")
        if any(a.type == "must_cite" and a.value == "gold" for a in self.assertions) and not self.gold_sources:
            problems.append("`must_cite: \"gold\"` needs `gold_sources`")
        if problems:
            raise _rule("; ".join(problems), problems=problems)
        return self


CASE_KEYS = tuple(CaseModel.model_fields)
ASSERTION_KEYS = tuple(AssertionModel.model_fields)


# ---- the JSON Schema --------------------------------------------------------
class _Plain(GenerateJsonSchema):
    def field_title_should_be_set(self, schema) -> bool:  # "Case Sensitive" etc. say nothing the key does not
        return False

    def sort(self, value, parent_key=None):  # keep the order fields are declared in
        return value


TOP_ORDER = ("$schema", "$id", "title", "description", "type", "additionalProperties", "required", "properties")


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:  # a nested model: inline it, without its class name as title
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            return _inline({k: v for k, v in target.items() if k != "title"}, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _drop_null_default(node: Any) -> Any:
    """``X | None = None`` becomes plain ``X``: in a case file an optional key is left out, not null."""
    if isinstance(node, dict):
        any_of = node.get("anyOf")
        if any_of and {"type": "null"} in any_of and node.get("default", 0) is None:
            rest = [s for s in any_of if s != {"type": "null"}]
            node = {**{k: v for k, v in node.items() if k not in ("anyOf", "default")},
                    **(rest[0] if len(rest) == 1 else {"anyOf": rest})}
        return {k: _drop_null_default(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_drop_null_default(v) for v in node]
    return node


def case_json_schema() -> dict[str, Any]:
    """The JSON Schema of one eval case (draft 2020-12), generated from ``CaseModel``."""
    raw = CaseModel.model_json_schema(schema_generator=_Plain)
    defs = raw.pop("$defs", {})
    body = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **_drop_null_default(_inline(raw, defs))}
    return {**{k: body[k] for k in TOP_ORDER if k in body}, **body}


# ---- errors as messages ---------------------------------------------------------
def problems_of(exc: ValidationError) -> list[str]:
    """One message per problem, in the words ``llmspace eval`` shows after ``file:line:``."""
    out: list[str] = []
    unknown: dict[str, list[str]] = {}  # where -> unknown keys there (one message per object)
    for err in exc.errors():
        loc, kind = err["loc"], err["type"]
        if kind == "extra_forbidden":
            where, key = _where(loc[:-1]), str(loc[-1])
            if loc[:1] == ("messages",):
                _add(out, f"{where} must be an object with exactly `role` and `content`")
                continue
            if where not in unknown:
                unknown[where] = []
                out.append(where)  # placeholder, filled below
            unknown[where].append(key)
            continue
        if kind == RULE and "problems" in (err.get("ctx") or {}):
            for p in err["ctx"]["problems"]:
                _add(out, p)
            continue
        _add(out, _message(loc, kind, err))
    for i, item in enumerate(out):
        if item in unknown:
            allowed = ASSERTION_KEYS if item.startswith("assertions[") else CASE_KEYS
            keys = ", ".join(map(repr, unknown[item]))
            msg = f"unknown key(s) {keys}; allowed: {', '.join(allowed)}"
            out[i] = f"{item}: {msg}" if item else msg
    return out


def _add(out: list[str], msg: str) -> None:
    if msg not in out:
        out.append(msg)


def _where(loc: tuple) -> str:
    """``("assertions", 2)`` -> ``"assertions[2]"``; ``()`` -> ``""``."""
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))


def _message(loc: tuple, kind: str, err: dict) -> str:
    given = err.get("input")
    if not loc:
        return err["msg"] if kind == RULE else f"expected a JSON object, got {type(given).__name__}"
    field, rest = loc[0], loc[1:]
    if kind == RULE and field != "assertions":
        return f"`{field}` {err['msg']}" if field in ("gold_sources", "tags") else err["msg"]
    if field == "id":
        return "`id` must be at most 200 characters" if kind == "string_too_long" else \
            "missing `id` (a non-empty string)"
    if field in ("question", "index"):
        return f"`{field}` must be a non-empty string"
    if field in ("reference", "notes"):
        return f"`{field}` must be a string"
    if field in ("gold_sources", "tags"):
        return f"`{field}` must be a list of non-empty strings"
    if field == "messages":
        if not rest:
            return "`messages` must be a non-empty list of {role, content}"
        where = f"messages[{rest[0]}]"
        if rest[1:] == ("role",) and kind == "literal_error":
            return f"{where}.role is {given!r}; expected one of {', '.join(MESSAGE_ROLES)}"
        if rest[1:] == ("content",) and kind != "missing":
            return f"{where}.content must be a non-empty string"
        return f"{where} must be an object with exactly `role` and `content`"
    if field == "assertions":
        if not rest:
            return "missing `assertions` (a list; may be empty)" if kind == "missing" else "`assertions` must be a list"
        where, sub = f"assertions[{rest[0]}]", rest[1:]
        if kind == RULE:
            return f"{where}: {err['msg']}"
        if not sub:
            return f"{where}: must be an object like {{\"type\": \"contains\", \"value\": \"...\"}}"
        if sub == ("type",):
            shown = given if kind != "missing" else None
            return f"{where}: unknown assertion type {shown!r}; known: {', '.join(ASSERTION_TYPES)}"
        if sub == ("case_sensitive",):
            return f"{where}: `case_sensitive` must be true or false"
    return f"`{_where(loc)}`: {err['msg']}"
