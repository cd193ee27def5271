"""`preview`: every message a workflow can send for one event, on every path through its steps.

The walk starts at the event's date (offset +0s) with the run the trigger would start, and
executes steps with the engine's own pieces: waits are timed by `engine.timing`, contexts built
by `engine.context`, sends and contact updates executed by `engine.actions` on a throwaway
decision. A preview therefore renders exactly what the daemon would queue, quiet hours and
skips included.

Where the engine takes one way, the preview takes every way, in this order:
- `if` takes `if X` (then) and `if not X` (else, even when empty: the steps after the `if`);
- `wait_for` takes `if E arrives within T` (at the time the wait began; `event` then stands for
  the awaited event: its name, that time and the trigger's properties) and `if no E within T`
  (after the timeout);
- an `exit` step or the end of the steps ends a path.
Each branch is also marked `sample` when this event, with the contact's history and no event
after it, would take it: the one path the sample event follows through the workflow.

A failure (a template error, a condition that cannot be evaluated, a wait date that cannot be
computed) fails that message or that path only: the walk goes on and the report lists it.
Paths double with every branch: past `max_paths` ended paths the walk stops and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.actions import StepCall, send_email, send_sms, update_contact
from tidings.engine.context import all_hold, build_context, lookup
from tidings.engine.decision import ContactState, Draft, Environment
from tidings.engine.history import History
from tidings.engine.positions import branch_path, next_path, resolve, step_at
from tidings.engine.timing import due_from_date, next_time_of_day, resolve_zone
from tidings.errors import ConditionError
from tidings.model.contacts import Channel, Contact
from tidings.model.durations import format_duration
from tidings.model.events import Event
from tidings.model.runs import Run
from tidings.model.trace import TraceKind
from tidings.model.workflow import (
    ExitStep,
    IfStep,
    SendEmailStep,
    SendSmsStep,
    UpdateContactStep,
    WaitForStep,
    WaitSpec,
    WaitStep,
)
from tidings.service.preview_report import (
    Entry,
    EntryKind,
    MessageStatus,
    PathEnd,
    PreviewMessage,
    PreviewReport,
    document_path,
    goal_text,
    local_time,
    message_from,
    signed,
    trace_reason,
    updated_attributes,
)
from tidings.service.preview_trigger import start_run

MAX_PATHS = 256


@dataclass(frozen=True)
class _Cursor:
    """A path being walked: where it is, when, and what it has changed so far."""

    position: str
    at: datetime
    contact: Contact
    event: dict[str, Any]
    branches: tuple[str, ...] = ()
    sample: bool = True
    stand_in: bool = False  # `event` stands for an awaited event the preview cannot know
    messages: tuple[int, ...] = ()
    label: Entry | None = None  # the branch line to print when the walk enters this path


def preview_workflow(
    workflow: CompiledWorkflow,
    event: Event,
    contact: Contact,
    env: Environment,
    *,
    history: Sequence[Event] = (),
    max_paths: int = MAX_PATHS,
) -> PreviewReport:
    """Walk every path of `workflow` for `event` about `contact` (see the module docstring).

    `history` is the contact's earlier events, seen by `has_event` and `count_events`.
    `workflow.source` is shown as given: pass a relative path for portable output.
    """
    return _Walk(workflow, event, contact, env, history=list(history), max_paths=max_paths).run()


class _Walk:
    """One preview: the trigger, then every path, depth first, `then` before `else`."""

    def __init__(
        self,
        workflow: CompiledWorkflow,
        event: Event,
        contact: Contact,
        env: Environment,
        *,
        history: list[Event],
        max_paths: int,
    ) -> None:
        self.workflow = workflow
        self.steps = workflow.definition.steps
        self.event = event
        self.env = env
        self.history = history
        self.max_paths = max_paths
        self.start = event.occurred_at
        zone = resolve_zone("contact", contact, workflow.definition.timezone)
        definition = workflow.definition
        self.report = PreviewReport(
            workflow_id=definition.id,
            name=definition.name,
            source=workflow.source.as_posix(),
            event_name=event.name,
            event_date=event.occurred_at,
            key="",
            contact_email=contact.email,
            contact_phone=contact.phone,
            zone=str(zone),
            goals=[goal_text(g.event, g.if_, g.reason) for g in definition.exit],
        )
        self.contact = contact
        start = start_run(workflow, event, contact, env, history)
        self.run_model = start.run
        self.report.key = start.run.key
        self.report.notes.extend(start.notes)
        self.report.errors.extend(start.errors)

    # ------------------------------------------------------------------ walking

    def run(self) -> PreviewReport:
        """Walk every path and return the report."""
        stack = [_Cursor("0", self.start, self.contact, self.event.template_view())]
        while stack:
            cursor = stack.pop()
            if len(self.report.paths) >= self.max_paths:
                self.report.truncated = True
                self.report.notes.append(
                    f"stopped after {self.max_paths} paths: the workflow branches too often "
                    "to preview every path"
                )
                break
            children = self._follow(cursor)
            stack.extend(reversed(children))  # depth first, first branch first
        return self.report

    def _follow(self, cursor: _Cursor) -> list[_Cursor]:
        """Walk one path until it branches (its branches returned) or ends (nothing returned)."""
        if cursor.label is not None:
            self.report.timeline.append(cursor.label)
            cursor = replace(cursor, label=None)
        while True:
            current = resolve(self.steps, cursor.position)
            if current is None:
                self._end(cursor, "finished", "reached the end of the workflow")
                return []
            step = step_at(self.steps, current)
            cursor = replace(cursor, position=current)
            if isinstance(step, WaitStep):
                waited = self._wait(cursor, step.wait)
                if waited is None:
                    return []
                cursor = replace(waited, position=next_path(current))
            elif isinstance(step, WaitForStep):
                return self._wait_for(cursor, step)
            elif isinstance(step, IfStep):
                return self._if(cursor, step)
            elif isinstance(step, ExitStep):
                self._end(cursor, "exited", step.exit)
                return []
            elif isinstance(step, SendEmailStep | SendSmsStep):
                cursor = replace(self._send(cursor, step), position=next_path(current))
            elif isinstance(step, UpdateContactStep):
                cursor = replace(self._update(cursor, step), position=next_path(current))

    def _wait(self, cursor: _Cursor, spec: WaitSpec) -> _Cursor | None:
        """Move the path's time to when the wait is due; None when the due time fails."""
        zone = resolve_zone(spec.timezone, cursor.contact, self.workflow.definition.timezone)
        if spec.for_ is not None:
            due, text = cursor.at + spec.for_, f"wait {format_duration(spec.for_)}"
        elif spec.until is not None:
            due = next_time_of_day(cursor.at, spec.until, zone, spec.weekdays)
            days = f" on {', '.join(spec.weekdays)}" if spec.weekdays else ""
            text = f"wait until next {spec.until:%H:%M}{days} {zone} ({signed(due - cursor.at)})"
        else:
            source = spec.date or ""
            shift = f" {signed(spec.offset)}" if spec.offset else ""
            try:
                value = lookup(self.workflow.conditions, source).value(self._context(cursor))
                due, past = due_from_date(value, zone, spec.offset, cursor.at)
            except (ConditionError, ValueError) as exc:
                error = f"cannot compute the wait's date: {exc}"
                self._fail(cursor, error)
                self._end(cursor, "error", error)
                return None
            if past:
                text = f"wait for {source}{shift}: already past, due at once"
            else:
                span = signed(due - cursor.at)
                text = f"wait until {local_time(due, zone)} ({source}{shift}, {span})"
        cursor = replace(cursor, at=due)
        self._entry(cursor, EntryKind.wait, text)
        return cursor

    def _wait_for(self, cursor: _Cursor, step: WaitForStep) -> list[_Cursor]:
        """Both ways out of a `wait_for`: the event arrives, or the timeout passes."""
        spec = step.wait_for
        names = " or ".join(spec.event)
        timeout = format_duration(spec.timeout)
        self._entry(cursor, EntryKind.wait_for, f"wait_for {names} (timeout {timeout})")
        where = f" where {' and '.join(spec.if_)}" if spec.if_ else ""
        received = {
            "id": f"{self.event.id}-{spec.event[0]}",
            "name": spec.event[0],
            "date": cursor.at,
            "properties": self.event.properties,
            "contact_properties": {},
            "object": None,
        }
        arrives = self._branch(
            cursor,
            f"if {names} arrives within {timeout}{where}",
            "on_event",
            sample=False,  # no later event is part of a preview
            event=received,
            stand_in=True,
        )
        times_out = self._branch(
            replace(cursor, at=cursor.at + spec.timeout),
            f"if no {names} within {timeout}",
            "on_timeout",
            sample=cursor.sample,
        )
        return [arrives, times_out]

    def _if(self, cursor: _Cursor, step: IfStep) -> list[_Cursor]:
        """Both sides of an `if`, each marked with whether this event takes it."""
        shown = " and ".join(step.if_)
        holds: bool | None = None
        try:
            holds = all_hold(self.workflow.conditions, step.if_, self._context(cursor))
        except ConditionError as exc:
            self._fail(cursor, str(exc))
        negated = f"not {shown}" if _simple(shown) else f"not ({shown})"
        return [
            self._branch(cursor, f"if {shown}", "then", sample=cursor.sample and holds is True),
            self._branch(cursor, f"if {negated}", "else", sample=cursor.sample and holds is False),
        ]

    def _branch(
        self, cursor: _Cursor, label: str, branch: str, *, sample: bool, **changes: Any
    ) -> _Cursor:
        """The cursor of one branch; its label line waits until the walk enters the branch."""
        child = replace(
            cursor,
            position=branch_path(cursor.position, branch),
            branches=(*cursor.branches, label),
            sample=sample,
            **changes,
        )
        # The label is a line at the parent's step and depth, at the branch's time.
        head = replace(cursor, at=child.at, sample=sample)
        return replace(child, label=self._line(head, EntryKind.branch, label))

    # ------------------------------------------------------------------ acting

    def _send(self, cursor: _Cursor, step: SendEmailStep | SendSmsStep) -> _Cursor:
        """Render a send through the engine's own step and record what it would queue."""
        draft, call = self._call(cursor)
        template: str | None
        if isinstance(step, SendEmailStep):
            channel, template = Channel.email, step.send_email.template
            transactional = step.send_email.transactional
            send_email(call, step.send_email)
        else:
            channel, template = Channel.sms, step.send_sms.template
            transactional = step.send_sms.transactional
            send_sms(call, step.send_sms)
        zone = resolve_zone("contact", cursor.contact, self.workflow.definition.timezone)
        number = len(self.report.messages) + 1
        base = PreviewMessage(
            number=number,
            step=document_path(cursor.position),
            branches=cursor.branches,
            offset=cursor.at - self.start,
            at=cursor.at,
            local=local_time(cursor.at, zone),
            channel=channel,
            template=template,
            transactional=transactional,
            status=MessageStatus.error,
            sample=cursor.sample,
            unsubscribe_url=None
            if transactional
            else self.env.unsubscribe_url(cursor.contact.id, channel),
        )
        message = message_from(draft.build(), base, zone)
        self.report.messages.append(message)
        if message.error is not None:
            self.report.errors.append(f"message {number} ({message.what}): {message.error}")
        kind = "transactional" if transactional else "marketing"
        text = f"message {number}: {message.what} ({kind})"
        if message.to:
            text += f" to {message.to}"
        if message.status is MessageStatus.skipped:
            text += f", skipped: {message.problem}"
        elif message.status is MessageStatus.deferred:
            text += f", {message.problem}"
        self._entry(cursor, EntryKind.send, text, message=number, error=message.error)
        return replace(cursor, messages=(*cursor.messages, number))

    def _update(self, cursor: _Cursor, step: UpdateContactStep) -> _Cursor:
        """Apply `update_contact` to this path's contact, as the engine would."""
        draft, call = self._call(cursor)
        update_contact(call, step.update_contact)
        decision = draft.build()
        errors = [e for e in decision.trace if e.kind is TraceKind.error]
        if errors:
            self._fail(cursor, trace_reason(errors[0]))
            return cursor
        values = updated_attributes(decision).items()
        names = ", ".join(f"{name}={value!r}" for name, value in values)
        self._entry(cursor, EntryKind.update_contact, f"update_contact {names}")
        return replace(cursor, contact=decision.contact or cursor.contact)

    # ------------------------------------------------------------------ helpers

    def _history(self, at: datetime) -> History:
        return History(self.history, at, self.event)

    def _run(self, cursor: _Cursor) -> Run:
        return self.run_model.model_copy(
            update={"event": cursor.event, "position": cursor.position}
        )

    def _context(self, cursor: _Cursor) -> dict[str, Any]:
        self._note_stand_in(cursor)
        return build_context(
            contact=cursor.contact,
            event=cursor.event,
            now=cursor.at,
            history=self._history(cursor.at),
            run=self._run(cursor),
        )

    def _call(self, cursor: _Cursor) -> tuple[Draft, StepCall]:
        """A throwaway decision at the path's time, and the engine's call for its current step."""
        self._note_stand_in(cursor)
        state = ContactState(contact=cursor.contact, runs=(), history=self.history)
        draft = Draft(state, cursor.at, self.env, self.event)
        return draft, StepCall(draft, self.workflow, self._run(cursor), cursor.position)

    def _note_stand_in(self, cursor: _Cursor) -> None:
        note = (
            "after a wait_for's event arrives, `event` is a stand-in for it: "
            "its name, with the trigger event's properties"
        )
        if cursor.stand_in and note not in self.report.notes:
            self.report.notes.append(note)

    def _entry(
        self,
        cursor: _Cursor,
        kind: EntryKind,
        text: str,
        *,
        message: int | None = None,
        error: str | None = None,
    ) -> None:
        """Add one line to the timeline."""
        self.report.timeline.append(self._line(cursor, kind, text, message=message, error=error))

    def _line(
        self,
        cursor: _Cursor,
        kind: EntryKind,
        text: str,
        *,
        message: int | None = None,
        error: str | None = None,
    ) -> Entry:
        """A timeline line at the cursor's step, depth and time."""
        return Entry(
            kind=kind,
            step=document_path(cursor.position),
            depth=len(cursor.branches),
            offset=cursor.at - self.start,
            at=cursor.at,
            text=text,
            sample=cursor.sample,
            message=message,
            error=error,
        )

    def _fail(self, cursor: _Cursor, error: str) -> None:
        """Record an error of a step (not of a message) in the report."""
        self.report.errors.append(f"{document_path(cursor.position)}: {error}")

    def _end(self, cursor: _Cursor, outcome: str, reason: str) -> None:
        text = f"end: {outcome}" if outcome == "finished" else f"end: {outcome} ({reason})"
        entry = self._line(cursor, EntryKind.end, text)
        if outcome == "finished":  # past the last step: no step to point at
            entry = replace(entry, step=None)
        self.report.timeline.append(entry)
        self.report.paths.append(
            PathEnd(
                branches=cursor.branches,
                offset=cursor.at - self.start,
                at=cursor.at,
                outcome=outcome,
                reason=reason,
                sample=cursor.sample,
                messages=cursor.messages,
            )
        )


def _simple(expression: str) -> bool:
    """Whether `not` can prefix an expression without parentheses."""
    return not any(ch.isspace() for ch in expression)
