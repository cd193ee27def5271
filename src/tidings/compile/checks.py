"""The checks beyond the schema: expressions compile, references resolve.

Stage (c) compiles every condition and inline template once, so a Jinja syntax error is a
validation error located at the YAML value it came from. Stage (d) checks what the schema cannot
see: templates that exist in the catalog, branches written empty, steps that can never run, and
an id that agrees with the file name.

Both walk the document as written (plain data with marks), not the validated model, so that
they run whether or not the schema stage passed: an unknown key in the trigger does not hide a
broken condition or a missing template further down. Each check looks only at values of the
type the schema expects there (a condition that is not a string, a step whose kind cannot be
told) and leaves anything else to the schema's own problem, so nothing is reported twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings.compile.conditions import Condition, compile_condition
from tidings.compile.humanize import suggestion
from tidings.compile.templates import TemplateCatalog, compile_inline
from tidings.compile.yaml_marks import DocPath, MarkedDocument, fit_path, format_path, value_at
from tidings.errors import ConditionError, Location, Problem, TemplateError
from tidings.model.workflow import WORKFLOW_ID_PATTERN, step_kind

_LINE_PREFIX = re.compile(r"^line (\d+): ")
# Branches an author may leave out but should not write empty (`then: []` is a schema error).
_OPTIONAL_BRANCHES = ("else", "on_event", "on_timeout")
# Step fields that are inline templates, by step kind.
_TEMPLATE_FIELDS = {
    "send_email": ("to", "from", "reply_to", "subject"),
    "send_sms": ("to", "text"),
}


@dataclass
class Checker:
    """Runs stages (c) and (d) on one parsed document, collecting located problems."""

    doc: MarkedDocument
    file: str
    problems: list[Problem] = field(default_factory=list)
    conditions: dict[str, Condition] = field(default_factory=dict)

    def problem(self, path: DocPath, message: str, *, line_offset: int = 0) -> None:
        """Record a problem at `path` as written (shorthands fitted to the document)."""
        where = fit_path(self.doc.data, path)
        # A `|` or `>` scalar's text starts below its indicator: count lines from there.
        line, column = self.doc.block_scalars.get(where) or self.doc.mark(where)
        self.problems.append(
            Problem(Location(self.file, line + line_offset, column), format_path(where), message)
        )

    # ------------------------------------------------------------------ stage (c)

    def compile_expressions(self) -> None:
        """Compile every condition and inline template written where the schema expects one."""
        data = self.doc.data
        self._conditions(("trigger", "if"), value_at(data, ("trigger", "if")))
        for i, goal in enumerate(_items(data.get("exit"))):
            self._conditions(("exit", i, "if"), value_at(goal, ("if",)))
        if isinstance(data.get("key"), str):
            self._template(("key",), data["key"])
        for path, kind, body in raw_steps(data.get("steps"), ("steps",)):
            self._step_expressions((*path, kind), kind, body)

    def _step_expressions(self, path: DocPath, kind: str, body: Any) -> None:
        if kind == "if":
            self._conditions(path, body)
            return
        if not isinstance(body, dict):
            return
        if kind == "wait_for":
            self._conditions((*path, "if"), body.get("if"))
        elif kind == "wait" and isinstance(body.get("date"), str):
            # `date` is an expression whose value is a date-time, compiled like a condition so
            # the engine can take its value (Condition.value) without compiling it again.
            self._condition((*path, "date"), body["date"])
        elif kind in _TEMPLATE_FIELDS:
            for key in _TEMPLATE_FIELDS[kind]:
                if isinstance(body.get(key), str):
                    self._template((*path, key), body[key])
        elif kind == "update_contact":
            for name, value in body.items():
                if isinstance(value, str):
                    self._template((*path, name), value)

    def _conditions(self, path: DocPath, sources: Any) -> None:
        for i, source in enumerate(_items(sources)):
            if isinstance(source, str) and source:  # anything else is the schema's to report
                self._condition((*path, i), source)

    def _condition(self, path: DocPath, source: str) -> None:
        if source in self.conditions:
            return
        try:
            self.conditions[source] = compile_condition(source)
        except ConditionError as exc:
            reason = str(exc).removesuffix(f" (in condition {exc.expression!r})")
            offset = 0
            if match := _LINE_PREFIX.match(reason):  # a multi-line condition names its line
                offset, reason = int(match[1]) - 1, reason[match.end() :]
            self.problem(path, reason, line_offset=offset)

    def _template(self, path: DocPath, source: str) -> None:
        try:
            compile_inline(source, name=format_path(path))
        except TemplateError as exc:
            where = f"{exc.template}:{exc.line}: " if exc.line else f"{exc.template}: "
            offset = (exc.line or 1) - 1
            self.problem(path, str(exc).removeprefix(where), line_offset=offset)

    # ------------------------------------------------------------------ stage (d)

    def check_references(self, catalog: TemplateCatalog) -> None:
        """Templates exist, no step follows an exit, and the id agrees with the file name."""
        self._unreachable(self.doc.data.get("steps"), ("steps",))
        for path, kind, body in raw_steps(self.doc.data.get("steps"), ("steps",)):
            name = value_at(body, ("template",))
            if not isinstance(name, str) or kind not in ("send_email", "send_sms"):
                continue
            if kind == "send_email" and name and not catalog.has_email(name):
                hint = suggestion(name, catalog.email_names()) or (
                    f" (expected a file {name}.email.html in the templates folder)"
                )
                self.problem((*path, kind, "template"), _no_template("email", name, hint))
            if kind == "send_sms" and not catalog.has_sms(name):
                hint = suggestion(name, catalog.sms_names()) or (
                    f" (expected a file {name}.sms.txt in the templates folder)"
                )
                self.problem((*path, kind, "template"), _no_template("SMS", name, hint))
        self._id_matches_file()

    def _id_matches_file(self) -> None:
        workflow_id = self.doc.data.get("id")
        if not isinstance(workflow_id, str) or not re.fullmatch(WORKFLOW_ID_PATTERN, workflow_id):
            return  # a missing or malformed id is the schema's problem, not a second one here
        stem = Path(self.file).stem
        if Path(self.file).suffix in (".yaml", ".yml") and workflow_id != stem:
            self.problem(
                ("id",),
                f"id {workflow_id!r} does not match the file name {Path(self.file).name!r}; "
                "rename one so they agree",
            )

    def _unreachable(self, steps: Any, path: DocPath) -> None:
        if not isinstance(steps, list):
            return
        for i, step in enumerate(steps):
            for key, branch in _branches(step):
                self._unreachable(branch, (*path, i, *key))
        for i, step in enumerate(steps[:-1]):
            if step_kind(step) == "exit":
                line, _ = self.doc.mark(fit_path(self.doc.data, (*path, i)))
                self.problem(
                    (*path, i + 1), f"unreachable: this step comes after 'exit' (line {line})"
                )
                return

    def empty_branches(self) -> None:
        """Flag `else: []`, `on_event: []`, `on_timeout: []` written out empty."""
        for path, _, _ in raw_steps(self.doc.data.get("steps"), ("steps",)):
            step = value_at(self.doc.data, path)
            for key, branch in _branches(step):
                if key[-1] in _OPTIONAL_BRANCHES and branch == []:
                    self.problem(
                        (*path, *key), f"empty '{key[-1]}' branch: add steps or remove the key"
                    )


def _no_template(kind: str, name: str, hint: str) -> str:
    return f"no {kind} template named {name!r}{hint}"


def _items(value: Any) -> list[Any]:
    """A value the model reads as a list (`if: "x"` stands for `if: ["x"]`), as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _branches(step: Any) -> Iterator[tuple[DocPath, Any]]:
    """The step lists a step carries, by its kind: `then`/`else` of an if, the wait_for's."""
    kind = step_kind(step)
    if kind == "if":
        for key in ("then", "else"):
            if key in step:
                yield (key,), step[key]
    elif kind == "wait_for" and isinstance(step["wait_for"], dict):
        for key in ("on_event", "on_timeout"):
            if key in step["wait_for"]:
                yield ("wait_for", key), step["wait_for"][key]


def raw_steps(steps: Any, path: DocPath) -> Iterator[tuple[DocPath, str, Any]]:
    """Every step of a tree as written, in document order: its path, kind and the kind's value.

    The checks walk what was written rather than the model so that they run, on every part
    that can be checked, even when the schema refused something elsewhere in the file. A step
    whose kind cannot be told is left to the schema (it says which kind was meant).
    """
    if not isinstance(steps, list):
        return
    for i, step in enumerate(steps):
        kind = step_kind(step)
        if kind is None:
            continue
        yield (*path, i), kind, step[kind]
        for key, branch in _branches(step):
            yield from raw_steps(branch, (*path, i, *key))
