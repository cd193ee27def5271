"""Conditions: Jinja expressions compiled once at load and evaluated per event at run time.

A condition is a bare expression (`event.properties.total > 0`) or one wrapped in `{{ ... }}`.
Its value is Jinja truthiness (`0`, `""`, `[]`, `none` and `false` are false; the string
"false" is true). It sees the render context (`CONTEXT_NAMES`) plus the history helpers
(`HISTORY_FUNCTIONS`) the engine puts in the context as callables; a name outside these is
refused at compile time, so a typo is a load error rather than a run-time surprise.
`uses_history` tells the engine whether the helpers are needed, so it can skip the store query
for conditions that never look at history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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

HISTORY_FUNCTIONS = ("has_event", "count_events", "last_event")
"""Context callables that query the contact's event history."""


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
        compiled = env.compile_expression(expression, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        where = f"line {exc.lineno}: " if "\n" in expression else ""
        raise ConditionError(where + describe(exc), expression=source) from None
    allowed = (*CONTEXT_NAMES, *HISTORY_FUNCTIONS)
    for name, _line in unknown_names(tree, [*allowed, *env.globals]):
        known = ", ".join(allowed)
        raise ConditionError(f"unknown variable {name!r} (known: {known})", expression=source)
    uses_history = any(n.name in HISTORY_FUNCTIONS for n in tree.find_all(nodes.Name))
    return Condition(source=source, uses_history=uses_history, _expression=compiled)
