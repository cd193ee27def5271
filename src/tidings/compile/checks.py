"""The checks a workflow meets after its schema: expressions compile, references resolve.

Stage (c) compiles every condition and inline template once, so a Jinja syntax error is a
validation error located at the YAML value it came from. Stage (d) checks what the schema cannot
see: templates that exist in the catalog, branches written empty, steps that can never run, and
an id that agrees with the file name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings.compile.conditions import Condition, compile_condition
from tidings.compile.humanize import STEP_LIST_FIELDS, suggestion
from tidings.compile.templates import TemplateCatalog, compile_inline
from tidings.compile.yaml_marks import DocPath, MarkedDocument, fit_path, format_path
from tidings.errors import ConditionError, Location, Problem, TemplateError
from tidings.model.workflow import (
    ExitStep,
    IfStep,
    SendEmailStep,
    SendSmsStep,
    StepModel,
    UpdateContactStep,
    WaitForStep,
    WaitStep,
    Workflow,
)

_LINE_PREFIX = re.compile(r"^line (\d+): ")
# Branches an author may leave out but should not write empty (`then: []` is a schema error).
_OPTIONAL_BRANCHES = ("else", "on_event", "on_timeout")


@dataclass
class Checker:
    """Runs stages (c) and (d) on one validated workflow, collecting located problems."""

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

    def compile_expressions(self, workflow: Workflow) -> None:
        """Compile every condition and inline template of the workflow."""
        self._conditions(("trigger", "if"), workflow.trigger.if_)
        for i, goal in enumerate(workflow.exit):
            self._conditions(("exit", i, "if"), goal.if_)
        if workflow.key is not None:
            self._template(("key",), workflow.key)
        for path, step in walk_steps(workflow.steps, ("steps",)):
            self._step_expressions(path, step)

    def _step_expressions(self, path: DocPath, step: StepModel) -> None:
        if isinstance(step, IfStep):
            self._conditions((*path, "if"), step.if_)
        elif isinstance(step, WaitForStep):
            self._conditions((*path, "wait_for", "if"), step.wait_for.if_)
        elif isinstance(step, WaitStep) and step.wait.date is not None:
            # `date` is an expression whose value is a date-time, compiled like a condition so
            # the engine can take its value (Condition.value) without compiling it again.
            self._condition((*path, "wait", "date"), step.wait.date)
        elif isinstance(step, SendEmailStep):
            email = step.send_email
            for key, source in (
                ("to", email.to),
                ("from", email.from_),
                ("reply_to", email.reply_to),
                ("subject", email.subject),
            ):
                if source is not None:
                    self._template((*path, "send_email", key), source)
        elif isinstance(step, SendSmsStep):
            for key, source in (("to", step.send_sms.to), ("text", step.send_sms.text)):
                if source is not None:
                    self._template((*path, "send_sms", key), source)
        elif isinstance(step, UpdateContactStep):
            for name, value in step.update_contact.items():
                if isinstance(value, str):
                    self._template((*path, "update_contact", name), value)

    def _conditions(self, path: DocPath, sources: Sequence[str]) -> None:
        for i, source in enumerate(sources):
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

    def check_references(self, workflow: Workflow, catalog: TemplateCatalog) -> None:
        """Templates exist, no step follows an exit, and the id agrees with the file name."""
        self._unreachable(workflow.steps, ("steps",))
        for path, step in walk_steps(workflow.steps, ("steps",)):
            if isinstance(step, SendEmailStep) and not catalog.has_email(step.send_email.template):
                name = step.send_email.template
                hint = suggestion(name, catalog.email_names()) or (
                    f" (expected a file {name}.email.html in the templates folder)"
                )
                self.problem((*path, "send_email", "template"), _no_template("email", name, hint))
            if isinstance(step, SendSmsStep) and step.send_sms.template is not None:
                name = step.send_sms.template
                if not catalog.has_sms(name):
                    hint = suggestion(name, catalog.sms_names()) or (
                        f" (expected a file {name}.sms.txt in the templates folder)"
                    )
                    self.problem((*path, "send_sms", "template"), _no_template("SMS", name, hint))
        stem = Path(self.file).stem
        if Path(self.file).suffix in (".yaml", ".yml") and workflow.id != stem:
            self.problem(
                ("id",),
                f"id {workflow.id!r} does not match the file name {Path(self.file).name!r}; "
                "rename one so they agree",
            )

    def _unreachable(self, steps: Sequence[StepModel], path: DocPath) -> None:
        for i, step in enumerate(steps):
            if isinstance(step, IfStep):
                self._unreachable(step.then, (*path, i, "then"))
                self._unreachable(step.else_, (*path, i, "else"))
            elif isinstance(step, WaitForStep):
                self._unreachable(step.wait_for.on_event, (*path, i, "wait_for", "on_event"))
                self._unreachable(step.wait_for.on_timeout, (*path, i, "wait_for", "on_timeout"))
        for i, step in enumerate(steps[:-1]):
            if isinstance(step, ExitStep):
                line, _ = self.doc.mark(fit_path(self.doc.data, (*path, i)))
                self.problem(
                    (*path, i + 1), f"unreachable: this step comes after 'exit' (line {line})"
                )
                return

    def empty_branches(self) -> None:
        """Flag `else: []`, `on_event: []`, `on_timeout: []` written out empty (raw data)."""
        for path, step in _raw_steps(self.doc.data.get("steps"), ("steps",)):
            body = step.get("wait_for") if "wait_for" in step else step
            if not isinstance(body, dict):
                continue
            base = (*path, "wait_for") if body is not step else path
            for key in _OPTIONAL_BRANCHES:
                if key in body and body[key] == []:
                    self.problem((*base, key), f"empty '{key}' branch: add steps or remove the key")


def _no_template(kind: str, name: str, hint: str) -> str:
    return f"no {kind} template named {name!r}{hint}"


def walk_steps(steps: Sequence[StepModel], path: DocPath) -> Iterator[tuple[DocPath, StepModel]]:
    """Every step of a tree in document order, with its path (`steps[2].then[0]`...)."""
    for i, step in enumerate(steps):
        here = (*path, i)
        yield here, step
        if isinstance(step, IfStep):
            yield from walk_steps(step.then, (*here, "then"))
            yield from walk_steps(step.else_, (*here, "else"))
        elif isinstance(step, WaitForStep):
            yield from walk_steps(step.wait_for.on_event, (*here, "wait_for", "on_event"))
            yield from walk_steps(step.wait_for.on_timeout, (*here, "wait_for", "on_timeout"))


def _raw_steps(steps: Any, path: DocPath) -> Iterator[tuple[DocPath, dict[str, Any]]]:
    """Steps as written (before the schema), for checks that must run even when it fails."""
    if not isinstance(steps, list):
        return
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        yield (*path, i), step
        for key in STEP_LIST_FIELDS:
            yield from _raw_steps(step.get(key), (*path, i, key))
        inner = step.get("wait_for")
        if isinstance(inner, dict):
            for key in ("on_event", "on_timeout"):
                yield from _raw_steps(inner.get(key), (*path, i, "wait_for", key))
