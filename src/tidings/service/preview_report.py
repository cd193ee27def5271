"""What a preview found: the timeline of every path, the messages, how each path ends.

`report_document` turns a report into the stable JSON document `tidings preview --format json`
prints and golden-file tests compare: keys sorted by the encoder, no absolute paths, no
wall-clock time (offsets are relative to the event's date, instants computed from it, in UTC).
Bump `DOCUMENT_FORMAT` when the document changes shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from tidings.compile.sms_encoding import SmsInfo, sms_info
from tidings.engine.decision import Decision
from tidings.model.contacts import Channel
from tidings.model.durations import format_duration
from tidings.model.trace import TraceEntry, TraceKind

DOCUMENT_FORMAT = 1


class EntryKind(StrEnum):
    """What one line of the timeline records."""

    wait = "wait"
    wait_for = "wait_for"
    branch = "branch"
    send = "send"
    update_contact = "update_contact"
    end = "end"


class MessageStatus(StrEnum):
    """What would become of a message: queued, deferred by quiet hours, skipped, or failed."""

    ready = "ready"
    deferred = "deferred"
    skipped = "skipped"
    error = "error"


@dataclass(frozen=True)
class PreviewMessage:
    """One message the workflow would send on one path, rendered (or why it is not)."""

    number: int
    step: str  # where in the document, e.g. `steps[2].wait_for.on_timeout[0]`
    branches: tuple[str, ...]
    offset: timedelta  # after the trigger event
    at: datetime
    local: str  # `at` in the contact's zone, for people
    channel: Channel
    template: str | None  # None for an SMS written inline (`text:`)
    transactional: bool
    status: MessageStatus
    sample: bool  # on the path this event follows
    to: str | None = None
    sender: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    unsubscribe_url: str | None = None
    not_before: datetime | None = None  # later than `at` when quiet hours defer it
    sms: SmsInfo | None = None
    problem: str | None = None  # why deferred or skipped, or the error

    @property
    def html_file(self) -> str | None:
        """The file name its HTML part is written to (numbered, so names never clash)."""
        if self.html is None:
            return None
        name = (self.template or "message").replace("/", "-")
        return f"{self.number:02d}-{name}.html"

    @property
    def what(self) -> str:
        """`email abandoned_cart`, `SMS (inline text)`."""
        kind = "email" if self.channel is Channel.email else "SMS"
        return f"{kind} {self.template or '(inline text)'}"

    @property
    def error(self) -> str | None:
        """The error that stopped this message, if one did."""
        return self.problem if self.status is MessageStatus.error else None


@dataclass(frozen=True)
class Entry:
    """One line of the timeline, in walk order; `depth` counts the branches taken to reach it."""

    kind: EntryKind
    step: str | None  # None for the end of the steps
    depth: int
    offset: timedelta
    at: datetime
    text: str
    sample: bool
    message: int | None = None  # the number of the PreviewMessage of a send
    error: str | None = None


@dataclass(frozen=True)
class PathEnd:
    """How one path ends: the branches that lead there, when, and how the run would end."""

    branches: tuple[str, ...]
    offset: timedelta
    at: datetime
    outcome: str  # finished | exited | error
    reason: str
    sample: bool
    messages: tuple[int, ...]


@dataclass
class PreviewReport:
    """Everything `tidings preview` shows, without printing any of it."""

    workflow_id: str
    name: str | None
    source: str
    event_name: str
    event_date: datetime
    key: str
    contact_email: str | None
    contact_phone: str | None
    zone: str
    goals: list[str] = field(default_factory=list)
    timeline: list[Entry] = field(default_factory=list)
    messages: list[PreviewMessage] = field(default_factory=list)
    paths: list[PathEnd] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when every message rendered and every path could be walked."""
        return not self.errors


def document_path(position: str) -> str:
    """A step path as the workflow file names it: `2/on_timeout/0` is
    `steps[2].wait_for.on_timeout[0]`, `1/then/0` is `steps[1].then[0]`."""
    parts = position.split("/")
    text = f"steps[{parts[0]}]"
    for branch, index in zip(parts[1::2], parts[2::2], strict=True):
        owner = "wait_for." if branch in ("on_event", "on_timeout") else ""
        text += f".{owner}{branch}[{index}]"
    return text


def local_time(moment: datetime, zone: tzinfo) -> str:
    """`Tue 04 Mar 2025 16:30 Europe/Paris`."""
    return f"{moment.astimezone(zone):%a %d %b %Y %H:%M} {zone}"


def signed(value: timedelta) -> str:
    """An offset with its sign: `+1h`, `-24h`, `+0s`."""
    text = format_duration(value)
    return text if text.startswith("-") else f"+{text}"


# ---------------------------------------------------------------------- from the engine


def message_from(decision: Decision, base: PreviewMessage, zone: tzinfo) -> PreviewMessage:
    """Fill `base` from a decision of the engine's send step: its message, or why there is none."""
    if not decision.messages:
        for entry in decision.trace:
            if entry.kind is TraceKind.skip:
                return replace(base, status=MessageStatus.skipped, problem=trace_reason(entry))
            if entry.kind is TraceKind.error:
                return replace(base, status=MessageStatus.error, problem=trace_reason(entry))
        return replace(base, status=MessageStatus.error, problem="nothing was queued")
    queued = decision.messages[0]
    deferred = queued.not_before > queued.created_at
    return replace(
        base,
        status=MessageStatus.deferred if deferred else MessageStatus.ready,
        to=queued.to,
        sender=queued.sender,
        reply_to=queued.reply_to,
        subject=queued.subject,
        text=queued.text,
        html=queued.html,
        not_before=queued.not_before if deferred else None,
        sms=sms_info(queued.text) if queued.channel is Channel.sms else None,
        problem=(
            f"deferred by quiet hours until {local_time(queued.not_before, zone)}"
            if deferred
            else None
        ),
    )


def trace_reason(entry: TraceEntry) -> str:
    """The reason of an engine trace entry, without its `email 'x' not sent: ` preamble."""
    error = entry.data.get("error")
    if isinstance(error, str):
        return error
    for marker in (" not sent: ", " skipped: ", " not updated: "):
        _, found, rest = entry.message.partition(marker)
        if found:
            return rest
    return entry.message


def updated_attributes(decision: Decision) -> dict[str, Any]:
    """The attributes an `update_contact` decision set (None: removed), as the trace has them."""
    for entry in decision.trace:
        if entry.kind is TraceKind.update_contact:
            return dict(entry.data.get("attributes", {}))
    return {}


# ---------------------------------------------------------------------- the JSON document


def report_document(report: PreviewReport) -> dict[str, Any]:
    """The report as plain JSON values (see the module docstring)."""
    return {
        "format": DOCUMENT_FORMAT,
        "workflow": {"id": report.workflow_id, "name": report.name, "file": report.source},
        "event": {"name": report.event_name, "date": _instant(report.event_date)},
        "key": report.key,
        "contact": {
            "email": report.contact_email,
            "phone": report.contact_phone,
            "timezone": report.zone,
        },
        "exit_goals": list(report.goals),
        "timeline": [_entry(entry) for entry in report.timeline],
        "messages": [_message(message) for message in report.messages],
        "paths": [_path(path) for path in report.paths],
        "notes": list(report.notes),
        "errors": list(report.errors),
        "truncated": report.truncated,
        "ok": report.ok,
    }


def _instant(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _entry(entry: Entry) -> dict[str, Any]:
    return {
        "kind": entry.kind.value,
        "step": entry.step,
        "depth": entry.depth,
        "offset": signed(entry.offset),
        "at": _instant(entry.at),
        "text": entry.text,
        "sample": entry.sample,
        "message": entry.message,
        "error": entry.error,
    }


def _message(message: PreviewMessage) -> dict[str, Any]:
    sms = message.sms
    return {
        "number": message.number,
        "step": message.step,
        "branches": list(message.branches),
        "offset": signed(message.offset),
        "at": _instant(message.at),
        "local_time": message.local,
        "channel": message.channel.value,
        "template": message.template,
        "transactional": message.transactional,
        "status": message.status.value,
        "sample": message.sample,
        "to": message.to,
        "from": message.sender,
        "reply_to": message.reply_to,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "html_file": message.html_file,
        "unsubscribe_url": message.unsubscribe_url,
        "not_before": _instant(message.not_before),
        "sms": _sms(sms) if sms is not None else None,
        "problem": message.problem,
    }


def _sms(info: SmsInfo) -> dict[str, Any]:
    return {
        "characters": info.characters,
        "encoding": info.encoding,
        "units": info.units,
        "segments": info.segments,
    }


def _path(path: PathEnd) -> dict[str, Any]:
    return {
        "branches": list(path.branches),
        "offset": signed(path.offset),
        "at": _instant(path.at),
        "outcome": path.outcome,
        "reason": path.reason,
        "sample": path.sample,
        "messages": list(path.messages),
    }


def goal_text(events: Sequence[str], conditions: Sequence[str], reason: str | None) -> str:
    """An exit goal in words: `order_completed where event.properties.cart_id == run.key`."""
    text = " or ".join(events)
    if conditions:
        text += f" where {' and '.join(conditions)}"
    return f"{text} ({reason})" if reason else text
