"""Pydantic validation errors told the way a workflow author reads them.

Each pydantic error becomes one Problem: located at the key or value the author wrote (through
the YAML marks), with the document path as written (`steps[2].send_email.template`, without the
discriminator tag pydantic repeats in its locs) and a message saying what was expected and what
was found. Unknown keys get a did-you-mean among the keys the model accepts at that place, and
misspelled values (`mode: restrat`) among the values it allows.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, ValidationError
from pydantic_core import ErrorDetails

from tidings.compile.yaml_marks import (
    DocPath,
    MarkedDocument,
    child,
    format_path,
    is_absent,
    value_at,
)
from tidings.errors import Location, Problem
from tidings.model.workflow import (
    EVENT_NAME_PATTERN,
    STEP_KINDS,
    ExitStep,
    IfStep,
    SendEmailStep,
    SendSmsStep,
    UpdateContactStep,
    WaitForStep,
    WaitStep,
    Workflow,
    step_kind,
)

# Fields whose items are steps: pydantic puts the step's kind (its union tag) after the index.
STEP_LIST_FIELDS = frozenset({"steps", "then", "else", "on_event", "on_timeout"})
STEP_MODELS: dict[str, type[BaseModel]] = {
    "wait": WaitStep,
    "wait_for": WaitForStep,
    "if": IfStep,
    "send_email": SendEmailStep,
    "send_sms": SendSmsStep,
    "update_contact": UpdateContactStep,
    "exit": ExitStep,
}
_FOUND_WIDTH = 40

_EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "time_type": "a time of day such as 09:00",
    "time_parsing": "a time of day such as 09:00",
    "string_too_short": "a non-empty string",
    "none_required": "nothing (null)",
}


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelled word, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def suggestion(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a close candidate, else an empty string."""
    best = did_you_mean(word, candidates)
    return f" (did you mean {best!r}?)" if best else ""


def describe(value: Any) -> str:
    """A short, truncated rendering of a found value, in YAML's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= _FOUND_WIDTH else value[: _FOUND_WIDTH - 3] + "..."
        return repr(text)
    if isinstance(value, int | float | date | datetime | time):
        return str(value)
    if isinstance(value, list | dict) and not value:
        return "an empty list" if isinstance(value, list) else "an empty mapping"
    kind = "a list" if isinstance(value, list) else "a mapping"
    text = repr(value)
    if len(text) > _FOUND_WIDTH:
        text = text[: _FOUND_WIDTH - 4] + "..." + text[-1]
    return f"{kind} {text}"


def data_path(loc: Sequence[str | int], data: Any, *, missing: bool = False) -> DocPath:
    """The path as written in the document for a pydantic error loc.

    Drops the step-kind tag pydantic adds after an index in a list of steps, union member tags
    (`str`, `int`...) and list indexes a one-item shorthand does not have. When `missing` is set
    the last part is a required key that is not in the document and is kept.
    """
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        after_index = i >= 2 and isinstance(loc[i - 1], int) and loc[i - 2] in STEP_LIST_FIELDS
        if after_index and part in STEP_KINDS:
            continue
        found = child(node, part)
        if not is_absent(found):
            node = found
            out.append(part)
        elif missing and i == len(loc) - 1:
            out.append(part)
    return tuple(out)


def keys_at(path: DocPath, data: Any) -> list[str]:
    """The keys the model accepts in the mapping at `path` (aliases as authors write them)."""
    model = _model_at(path, data)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(path: DocPath, data: Any) -> type[BaseModel] | None:
    kind: Any = Workflow
    for depth, part in enumerate(path):
        kind = _resolve(kind, value_at(data, path[:depth]))
        if isinstance(part, int):
            args = get_args(kind) if get_origin(kind) is list else ()
            if not args:
                return None
            kind = args[0]
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            fields = {info.alias or name: info for name, info in kind.model_fields.items()}
            if part not in fields:
                return None
            kind = fields[part].annotation
        else:
            return None
    kind = _resolve(kind, value_at(data, path))
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _resolve(kind: Any, node: Any) -> Any:
    """Strip Annotated and Optional; pick the step model a step union means for this node."""
    while True:
        if get_origin(kind) is Annotated:
            base, *meta = get_args(kind)
            if any(isinstance(m, Discriminator) for m in meta):
                return STEP_MODELS.get(step_kind(node) or "")
            kind = base
        elif get_origin(kind) is Union or type(kind).__name__ == "UnionType":
            options = [a for a in get_args(kind) if a is not type(None)]
            if len(options) != 1:
                return kind
            kind = options[0]
        else:
            return kind


def schema_problems(error: ValidationError, doc: MarkedDocument, file: str) -> list[Problem]:
    """Every pydantic error as a located Problem; union alternatives merged into one."""
    grouped: dict[tuple[DocPath, bool], list[ErrorDetails]] = {}
    for err in error.errors(include_url=False):
        missing = err["type"] == "missing"
        path = data_path(err["loc"], doc.data, missing=missing)
        grouped.setdefault((path, missing), []).append(err)
    unknown = [path for (path, _), errs in grouped.items() if errs[0]["type"] == "extra_forbidden"]
    suggested = {
        (*path[:-1], best)
        for path in unknown
        if (best := did_you_mean(str(path[-1]), keys_at(path[:-1], doc.data)))
    }
    problems = []
    for (path, missing), errs in grouped.items():
        if missing and path in suggested:
            continue  # the misspelled key's own problem already says what to write
        problems.append(_problem(path, errs, doc, file))
    return problems


def _problem(path: DocPath, errs: list[ErrorDetails], doc: MarkedDocument, file: str) -> Problem:
    err = errs[0]
    kind = err["type"]
    found = value_at(doc.data, path, err.get("input"))
    if kind == "missing":
        return _located(doc, file, path[:-1], f"missing required key {path[-1]!r}")
    if kind == "extra_forbidden":
        return _located(doc, file, path, _unknown_key(path, doc.data), key=True)
    if kind == "step_kind":
        return _not_a_step(path, found, doc, file)
    if kind in ("value_error", "assertion_error"):
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return _located(doc, file, path, message)
    expected = _one_of([_expected(e, path) for e in errs])
    message = f"expected {expected}, found {describe(found)}"
    if kind in ("literal_error", "enum") and len(errs) == 1 and isinstance(found, str):
        # A misspelled value gets the same help as a misspelled key.
        allowed = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        message += suggestion(found, allowed)
    return _located(doc, file, path, message)


def _located(
    doc: MarkedDocument, file: str, path: DocPath, message: str, *, key: bool = False
) -> Problem:
    line, column = doc.mark(path, key=key)
    return Problem(Location(file, line, column), format_path(path), message)


def _unknown_key(path: DocPath, data: Any) -> str:
    name = str(path[-1])
    parent = path[:-1]
    if name in STEP_KINDS and step_kind(value_at(data, parent)) not in (None, name):
        return f"unknown key {name!r}: a step does one thing; start a new item '- {name}:'"
    known = keys_at(parent, data)
    best = did_you_mean(name, known)
    if best:
        return f"unknown key {name!r} (did you mean {best!r}?)"
    if known:
        return f"unknown key {name!r}; expected one of: {', '.join(known)}"
    return f"unknown key {name!r}"


def _not_a_step(path: DocPath, found: Any, doc: MarkedDocument, file: str) -> Problem:
    if isinstance(found, dict):
        for key in found:
            best = did_you_mean(str(key), STEP_KINDS)
            if best:
                message = f"unknown step {key!r} (did you mean {best!r}?)"
                return _located(doc, file, (*path, key), message, key=True)
    expected = "a step: one of " + ", ".join(STEP_KINDS)
    return _located(doc, file, path, f"expected {expected}, found {describe(found)}")


def _one_of(phrases: list[str]) -> str:
    """Alternatives of a union as one phrase: `a string, a number or a boolean`."""
    if len(phrases) > 1:  # inside a list, "true or false" would read as two alternatives
        phrases = ["a boolean" if p == _EXPECTED["bool_type"] else p for p in phrases]
        if "a number" in phrases:
            phrases = [p for p in phrases if p != _EXPECTED["int_type"]]
    unique = list(dict.fromkeys(phrases))
    return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " or " + unique[-1]


def _expected(err: ErrorDetails, path: DocPath) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in ("literal_error", "enum"):
        return f"one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == EVENT_NAME_PATTERN:
            return "an event name (letters, digits, '_' and '-')"
        if path == ("id",):
            return "an id of lowercase letters, digits, '_' and '-'"
        return f"text matching {ctx.get('pattern')}"
    if kind == "too_short":
        fewest = ctx.get("min_length", 1)
        last = next((p for p in reversed(path) if isinstance(p, str)), "")
        noun = "step" if last in STEP_LIST_FIELDS else "item"
        return f"at least {fewest} {noun}{'s' if fewest != 1 else ''}"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} items"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}
        bound = next(iter(ctx.values()), "?")
        return f"a number {sign.get(kind, '<')} {bound}"
    return _EXPECTED.get(kind) or err["msg"].removeprefix("Input should be ")
