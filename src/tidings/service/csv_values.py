"""A CSV row's property values through a mapping's specs: a column typed, a constant, or a
small sandboxed template over the row (`row.brand`).

A template that reads the row only as `row.<column>` or `row["<column>"]` gives the same text
for the same values of those columns (the sandbox lets it change nothing, and no filter or
global it may use depends on anything else, `random` aside): its text is kept per distinct
values, so a file of a million rows renders it once per brand and category rather than once
per row. Any other use of `row` (a loop over it, `row.get(...)`, a name that is not a column)
renders every row, as does a render that fails (it fails again, with its own reason).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import jinja2
from jinja2 import nodes

from tidings.compile.sandbox import describe, make_environment
from tidings.service.csv_mapping import PropertySpec, ValueType, typed

_KEPT = 100_000  # distinct renderings kept per template (then it starts again)
_UNCACHED = frozenset({"random"})  # filters whose text is not a function of their input


# (property, constant, template, column, what an empty cell gives, type) of one PropertySpec
_Plan = tuple[str, Any, str | None, str, str, ValueType]


class RowValues:
    """Properties of rows (`values`), templates compiled once, their texts kept per input."""

    def __init__(self, columns: Collection[str]) -> None:
        self._columns = frozenset(columns)
        self._env = make_environment()
        self._compiled: dict[str, tuple[jinja2.Template, tuple[str, ...] | None]] = {}
        self._rendered: dict[tuple[str, ...], str] = {}
        self._plans: dict[int, tuple[dict[str, PropertySpec], list[_Plan]]] = {}

    def values(self, specs: dict[str, PropertySpec], cells: dict[str, str]) -> dict[str, Any]:
        """The properties `specs` make of one row's cells; ValueError names a bad cell."""
        values: dict[str, Any] = {}
        for name, value, template, column, empty, kind in self._plan(specs):
            if value is not None:
                values[name] = value
                continue
            text = self.render(template, cells, name) if template is not None else cells[column]
            if not text.strip():
                if empty == "omit":
                    continue
                values[name] = None if empty == "null" else text
                continue
            try:
                values[name] = typed(text, kind)
            except ValueError as exc:
                raise ValueError(f"{column or name}: {exc}") from exc
        return values

    def _plan(self, specs: dict[str, PropertySpec]) -> list[_Plan]:
        """The specs as plain tuples, read once per mapping rather than once per row."""
        kept = self._plans.get(id(specs))
        if kept is None or kept[0] is not specs:
            plan: list[_Plan] = [
                (name, s.value, s.template, s.column or "", str(s.empty), s.type)
                for name, s in specs.items()
            ]
            kept = self._plans[id(specs)] = (specs, plan)
        return kept[1]

    def render(self, source: str, cells: dict[str, str], name: str) -> str:
        """A property template over the row, in the sandbox (kept per input when it can be)."""
        try:
            compiled = self._compiled.get(source)
            if compiled is None:
                compiled = self._compiled[source] = self._compile(source)
            template, reads = compiled
            if reads is None:
                return template.render(row=cells)
            key = (source, *[cells[column] for column in reads])
            text = self._rendered.get(key)
            if text is None:
                text = template.render(row=cells)
                if len(self._rendered) >= _KEPT:
                    self._rendered.clear()
                self._rendered[key] = text
            return text
        except jinja2.TemplateError as exc:
            raise ValueError(f"{name}: {describe(exc, source)}") from exc

    def _compile(self, source: str) -> tuple[jinja2.Template, tuple[str, ...] | None]:
        """The template, and the columns its text depends on alone (None: not only those)."""
        template = self._env.from_string(source)  # its errors, as ever, before parse's
        return template, columns_read(self._env.parse(source), self._columns)


def columns_read(tree: nodes.Template, columns: frozenset[str]) -> tuple[str, ...] | None:
    """The columns a template reads as `row.<column>` or `row["<column>"]`, when that is all
    it reads of the row and nothing else its text depends on; else None."""
    uses = [n for n in tree.find_all(nodes.Name) if n.name == "row"]
    if any(n.ctx != "load" for n in uses):
        return None  # `row` reassigned inside the template
    if any(f.name in _UNCACHED for f in tree.find_all(nodes.Filter)):
        return None
    read: list[str] = []
    accesses: list[nodes.Getattr | nodes.Getitem] = [*tree.find_all(nodes.Getattr)]
    accesses.extend(tree.find_all(nodes.Getitem))
    for node in accesses:
        if not (isinstance(node.node, nodes.Name) and node.node.name == "row"):
            continue
        if isinstance(node, nodes.Getattr):
            column: object = node.attr
        elif isinstance(node.arg, nodes.Const):
            column = node.arg.value
        else:
            return None  # `row[some_expression]`
        if not isinstance(column, str) or column not in columns:
            return None  # a dict method (`row.get`) or a missing column
        read.append(column)
    if len(read) != len(uses):
        return None  # `row` used bare: a loop over it, a filter of it...
    return tuple(sorted(set(read)))
