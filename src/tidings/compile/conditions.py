"""Conditions: Jinja expressions compiled once at load and evaluated per event at run time.

A condition is a bare expression (`event.properties.total > 0`) or one wrapped in `{{ ... }}`.
Its value is Jinja truthiness (`0`, `""`, `[]`, `none` and `false` are false; the string
"false" is true). It sees the render context (`CONTEXT_NAMES`) plus the history helpers
(`HISTORY_FUNCTIONS`) the engine puts in the context as callables; a name outside these is
refused at compile time, so a typo is a load error rather than a run-time surprise. So are
history calls the helpers cannot take: the event name comes first and alone, then only the
keywords `since=`, `within=` (a literal one must be a duration) and `where=` (a `{...}` literal
whose keys are quoted property names).
`uses_history` tells the engine whether the helpers are needed, so it can skip the store query
for conditions that never look at history.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.environment import TemplateExpression
from jinja2.parser import Parser

from tidings.compile.sandbox import (
    CONTEXT_NAMES,
    TidingsSandbox,
    describe,
    make_environment,
    unknown_names,
)
from tidings.errors import ConditionError, TidingsError
from tidings.model.durations import parse_duration

HISTORY_FUNCTIONS = ("has_event", "count_events", "last_event")
"""Context callables that query the contact's event history."""

HISTORY_KEYWORDS = ("since", "within", "where")
"""The keyword arguments every history helper takes after the event name."""


@dataclass(frozen=True)
class Condition:
    """A compiled condition; `evaluate` gives its truthiness for one context."""

    source: str
    uses_history: bool
    _expression: TemplateExpression = field(repr=False, compare=False)

    def value(self, context: Mapping[str, Any]) -> Any:
        """The expression's value (not only its truthiness), e.g. a date for `wait: {date: ...}`."""
        try:
            result = self._expression(context)
            if isinstance(result, jinja2.Undefined):
                bool(result)  # StrictUndefined raises UndefinedError, naming the variable
        except TidingsError:
            raise  # e.g. a StoreError from a history helper keeps its own meaning
        except Exception as exc:  # every failure inside Jinja becomes ours, with the reason
            raise ConditionError(describe(exc, self.source), expression=self.source) from exc
        return result

    def evaluate(self, context: Mapping[str, Any]) -> bool:
        """Whether the condition holds for `context`; raises ConditionError when it cannot tell."""
        result = self.value(context)
        try:
            return bool(result)
        except Exception as exc:  # a data object whose __bool__ fails
            raise ConditionError(describe(exc, self.source), expression=self.source) from exc


@cache
def _environment() -> TidingsSandbox:
    env = make_environment()
    assert isinstance(env, TidingsSandbox)
    return env


def _unwrap(source: str) -> str:
    text = source.strip()
    if text.startswith("{{") and text.endswith("}}"):
        text = text[2:-2].strip()
    return text


def _parse(env: jinja2.Environment, expression: str) -> nodes.Expr:
    parser = Parser(env, expression, state="variable")
    tree = parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise jinja2.TemplateSyntaxError(
            f"unexpected {token.value!r} after the expression", token.lineno
        )
    return tree


def compile_condition(source: str) -> Condition:
    """Compile a condition; raises ConditionError naming the Jinja reason (and line)."""
    expression = _unwrap(source)
    if not expression:
        raise ConditionError("empty condition", expression=source)
    env = _environment()
    try:
        tree = _parse(env, expression)
        # Its template's globals are one flat dict (`TidingsSandbox.make_globals`).
        compiled = env.compile_expression(expression, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        where = f"line {exc.lineno}: " if "\n" in expression else ""
        raise ConditionError(where + describe(exc), expression=source) from None
    allowed = (*CONTEXT_NAMES, *HISTORY_FUNCTIONS)
    for name, _line in unknown_names(tree, [*allowed, *env.globals]):
        known = ", ".join(allowed)
        raise ConditionError(f"unknown variable {name!r} (known: {known})", expression=source)
    for problem in _history_call_problems(tree):
        raise ConditionError(problem, expression=source)
    uses_history = any(n.name in HISTORY_FUNCTIONS for n in tree.find_all(nodes.Name))
    return Condition(source=source, uses_history=uses_history, _expression=compiled)


def _history_call_problems(tree: nodes.Expr) -> Iterator[str]:
    """What is wrong with the history helper calls of a parsed condition, if anything."""
    calls = [tree] if isinstance(tree, nodes.Call) else []  # find_all skips the node itself
    for call in [*calls, *tree.find_all(nodes.Call)]:
        if not (isinstance(call.node, nodes.Name) and call.node.name in HISTORY_FUNCTIONS):
            continue
        helper = call.node.name
        if call.dyn_args is not None or call.dyn_kwargs is not None:
            yield f"{helper}: *args and **kwargs are not supported"
        if len(call.args) != 1:
            yield (
                f"{helper}: expected the event name alone before the keywords"
                f" ({', '.join(k + '=' for k in HISTORY_KEYWORDS)}), found"
                f" {len(call.args)} positional argument(s)"
            )
        elif isinstance(call.args[0], nodes.Const) and not isinstance(call.args[0].value, str):
            yield f"{helper}: the event name must be text, found {call.args[0].value!r}"
        for keyword in call.kwargs:
            yield from _keyword_problems(helper, keyword)


def _keyword_problems(helper: str, keyword: nodes.Keyword) -> Iterator[str]:
    """What is wrong with one `key=value` of a history helper call, if anything."""
    name, value = keyword.key, keyword.value
    if name not in HISTORY_KEYWORDS:
        close = difflib.get_close_matches(name, HISTORY_KEYWORDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        yield f"{helper}: unknown argument {name!r} ({hint}expected {', '.join(HISTORY_KEYWORDS)})"
    elif name == "within" and isinstance(value, nodes.Const):
        try:
            parse_duration(value.value)
        except (ValueError, TypeError) as exc:
            yield f"{helper}: within: {exc}"
    elif name == "since" and isinstance(value, nodes.Const):
        try:
            datetime.fromisoformat(str(value.value).strip())
        except ValueError:
            yield f"{helper}: since: expected an ISO 8601 date-time, found {value.value!r}"
    elif name == "where":
        example = 'e.g. where={"product_id": run.key}'
        if not isinstance(value, nodes.Dict):
            yield f"{helper}: where: expected a {{...}} of property names to values, {example}"
            return
        for pair in value.items:
            key = pair.key
            if not (isinstance(key, nodes.Const) and isinstance(key.value, str) and key.value):
                yield f"{helper}: where: keys must be quoted property names, {example}"
