"""`explain`: why a contact got (or did not get) a message, as text an operator reads.

`find_contact` and `read_report` gather what the store knows about one contact; `explain` is
pure over that data and `now`: the trace of every decision (trigger matches, condition values,
waits with their due times, exits and skips with their reasons, sends), each run's state, every
message with its delivery state, and what is due next and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tidings.model.contacts import Contact
from tidings.model.events import IdentifierKind, normalise_identifier
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Run, RunStatus
from tidings.model.trace import TraceEntry
from tidings.ports import Store, UnitOfWork

GENERAL = "*"  # trace entries that belong to no workflow (consent, conflicts, quarantined events)


@dataclass(frozen=True)
class ContactReport:
    """Everything `explain` shows about one contact, as read from the store."""

    contact: Contact
    runs: Sequence[Run]  # every run, any status, oldest first
    trace: Sequence[TraceEntry]  # time order
    messages: Sequence[Message]  # oldest first
    workflow_id: str | None = None  # limit the report to one workflow


def find_contact(uow: UnitOfWork, reference: str) -> Contact | None:
    """A contact by id, or by any identifier it holds (email, ext_id, phone...)."""
    reference = reference.strip()
    if not reference:
        return None
    found = uow.get_contact(reference)
    if found is not None:
        return found
    kinds = [k for k in IdentifierKind if k is not IdentifierKind.contact_id]
    if "@" in reference:
        kinds = [IdentifierKind.email_id]
    for kind in kinds:
        value = normalise_identifier(kind, reference)
        if not value:
            continue
        contacts = uow.find_contacts({kind: value})
        if contacts:
            return contacts[0]
    return None


def read_report(
    store: Store, reference: str, workflow_id: str | None = None
) -> ContactReport | None:
    """What the store knows about a contact (None when no contact matches `reference`)."""
    with store.transaction() as uow:
        contact = find_contact(uow, reference)
        if contact is None:
            return None
        runs = uow.runs_for_contact(contact.id, active_only=False)
        trace = uow.trace_for_contact(contact.id, workflow_id)
        messages = uow.messages_for_contact(contact.id)
    if workflow_id is not None:
        runs = [r for r in runs if r.workflow_id == workflow_id]
        messages = [m for m in messages if m.workflow_id == workflow_id]
    return ContactReport(contact, runs, trace, messages, workflow_id)


def explain(report: ContactReport, now: datetime) -> str:
    """The report as text: header, then per workflow its runs, trace and messages, then next."""
    lines = _header(report.contact)
    workflows = sorted(
        {r.workflow_id for r in report.runs}
        | {t.workflow_id for t in report.trace}
        | {m.workflow_id for m in report.messages}
    )
    if report.workflow_id is not None and report.workflow_id not in workflows:
        workflows.append(report.workflow_id)
    for workflow_id in workflows:
        lines.append("")
        lines.extend(_workflow_section(report, workflow_id, now))
    lines.append("")
    lines.extend(_next_section(report, now))
    return "\n".join(lines) + "\n"


def _header(contact: Contact) -> list[str]:
    identifiers = ", ".join(f"{k.value}={v}" for k, v in sorted(contact.identifiers.items()))
    lines = [f"Contact {contact.id}" + (f" ({identifiers})" if identifiers else "")]
    if contact.timezone:
        lines.append(f"  time zone: {contact.timezone}")
    if contact.unsubscribed:
        channels = ", ".join(sorted(c.value for c in contact.unsubscribed))
        lines.append(f"  unsubscribed from: {channels}")
    return lines


def _workflow_section(report: ContactReport, workflow_id: str, now: datetime) -> list[str]:
    title = "General" if workflow_id == GENERAL else f"Workflow {workflow_id}"
    lines = [title]
    runs = [r for r in report.runs if r.workflow_id == workflow_id]
    for run in runs:
        lines.append(f"  run {run.id}: {_run_state(run, now)}")
    trace = [t for t in report.trace if t.workflow_id == workflow_id]
    if not trace and not runs:
        lines.append("  nothing recorded")
    for entry in trace:
        step = f" [step {entry.step}]" if entry.step else ""
        lines.append(f"  {_time(entry.at)}  {entry.kind.value:<16}{entry.message}{step}")
    messages = [m for m in report.messages if m.workflow_id == workflow_id]
    if messages:
        lines.append("  messages:")
        lines.extend(f"    {_message_line(m, now)}" for m in messages)
    return lines


def _next_section(report: ContactReport, now: datetime) -> list[str]:
    timed: list[tuple[datetime, str]] = []
    untimed: list[str] = []
    for run in report.runs:
        if run.status is not RunStatus.waiting:
            continue
        names = ", ".join(run.waiting_for)
        if run.due_at is None:
            untimed.append(f"{run.workflow_id} run {run.id} waits for {names}")
            continue
        what = f"{run.workflow_id} run {run.id} continues after step {run.position}"
        timed.append((run.due_at, what + (f" (unless {names} arrives first)" if names else "")))
    for message in report.messages:
        if message.status in (MessageStatus.pending, MessageStatus.sending):
            what = f"{message.channel.value} {_describe(message)} to {message.to}: delivery"
            timed.append((_message_due(message), what))
    if not timed and not untimed:
        return ["Next: nothing is waiting"]
    lines = ["Next:"]
    for due, what in sorted(timed, key=lambda item: item[0]):
        lines.append(f"  {_time(due)} ({_relative(due, now)})  {what}")
    lines.extend(f"  (no time limit)  {what}" for what in untimed)
    return lines


def _run_state(run: Run, now: datetime) -> str:
    started = f"started {_time(run.started_at)}" + (f", key {run.key!r}" if run.key else "")
    if run.status is RunStatus.finished:
        outcome = run.outcome.value if run.outcome else "finished"
        reason = f": {run.reason}" if run.reason else ""
        ended = f" at {_time(run.finished_at)}" if run.finished_at else ""
        return f"{started}; {outcome}{ended}{reason}"
    if run.status is RunStatus.queued:
        return f"{started}; queued behind another run of the same key"
    waiting = f"{started}; waiting at step {run.position}"
    if run.waiting_for:
        waiting += f" for {', '.join(run.waiting_for)}"
    if run.due_at is not None:
        waiting += f", due {_time(run.due_at)} ({_relative(run.due_at, now)})"
    return waiting


def _message_line(message: Message, now: datetime) -> str:
    head = f"{message.channel.value} {_describe(message)} to {message.to}"
    if message.status is MessageStatus.sent:
        sent = _time(message.sent_at) if message.sent_at else "?"
        ref = f" ({message.provider_id})" if message.provider_id else ""
        return f"{head}: sent {sent}{ref}"
    if message.status is MessageStatus.failed:
        return f"{head}: failed after {message.attempts} attempt(s): {message.last_error}"
    if message.status is MessageStatus.cancelled:
        return f"{head}: cancelled, not sent: {message.last_error}"
    due = _message_due(message)
    state = "being sent" if message.status is MessageStatus.sending else "pending"
    tail = f", last error: {message.last_error}" if message.last_error else ""
    return (
        f"{head}: {state}, {message.attempts} attempt(s), next {_time(due)}"
        f" ({_relative(due, now)}){tail}"
    )


def _describe(message: Message) -> str:
    label = repr(message.subject) if message.subject else f"from step {message.step}"
    return label + (" (transactional)" if message.transactional else "")


def _message_due(message: Message) -> datetime:
    if message.next_attempt_at is None:
        return message.not_before
    return max(message.not_before, message.next_attempt_at)


def _time(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if when is not None else "-"


def _relative(when: datetime, now: datetime) -> str:
    delta = when - now
    if abs(delta) < timedelta(seconds=1):
        return "now"
    text = _span(abs(delta))
    return f"in {text}" if delta > timedelta(0) else f"{text} ago"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if secs and not days:
        parts.append(f"{secs}s")
    return " ".join(parts[:2]) or "0s"
