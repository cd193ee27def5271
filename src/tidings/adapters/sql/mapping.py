"""Rows to domain objects and back: the explicit boundary between SQL and the model.

Writers produce plain dicts of column values (for bulk `insert().values` / executemany);
readers take column values by name (a SQLAlchemy `RowMapping`, or a driver row converted as
SQLAlchemy would). Times are converted to UTC by the `UTCDateTime` column type, so both
directions here deal only in shapes: enums to text, tuples and sets to JSON lists, bookkeeping
columns (message `due_at`, `lease_until`) that the domain does not see.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tidings.model.contacts import Channel, Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind

Values = dict[str, Any]
# A row read: a SQLAlchemy `RowMapping` (keyed by name or column) or a dict of converted values.
RowValues = Mapping[Any, Any]
# Each kind with its column text, in lookup order (iterating the Enum per row cost more).
_KINDS = tuple((kind, kind.value) for kind in IdentifierKind)


def contact_values(contact: Contact) -> Values:
    """Column values of a contact row (identifiers go to their own table)."""
    return {
        "id": contact.id,
        "attributes": contact.attributes,
        "timezone": contact.timezone,
        "unsubscribed": sorted(channel.value for channel in contact.unsubscribed),
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def contact_from_row(row: RowValues, identifiers: Mapping[str, str]) -> Contact:
    """A contact from its row and its (kind -> value) identifiers."""
    ordered = {kind: identifiers[text] for kind, text in _KINDS if text in identifiers}
    if len(ordered) < len(identifiers):
        for text in identifiers:
            IdentifierKind(text)  # the ValueError naming a kind this version does not know
    return Contact(
        id=row["id"],
        identifiers=ordered,
        attributes=row["attributes"],
        timezone=row["timezone"],
        unsubscribed=row["unsubscribed"],  # a list of channel texts: validated to the set
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def event_values(event: Event, dedup_key: str | None, *, processed: bool = False) -> Values:
    """Column values of a new event row (`seq` is assigned by the database; `processed_at`
    stays empty for history: no workflow ever applied it)."""
    return {
        "id": event.id,
        "name": event.name,
        "contact_id": event.contact_id,
        "identifiers": {kind.value: value for kind, value in event.identifiers.items()},
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "properties": event.properties,
        "contact_properties": event.contact_properties,
        "object": event.object,
        "conflicts": {kind.value: value for kind, value in event.conflicts.items()},
        "source": event.source,
        "dedup_key": dedup_key,
        "processed": processed,
    }


def event_from_row(row: RowValues) -> Event:
    """An event from its row."""
    return Event(
        id=row["id"],
        name=row["name"],
        identifiers=row["identifiers"],
        occurred_at=row["occurred_at"],
        received_at=row["received_at"],
        properties=row["properties"],
        contact_properties=row["contact_properties"],
        object=row["object"],
        contact_id=row["contact_id"],
        seq=row["seq"],
        source=row["source"],
        conflicts=row["conflicts"],
    )


RUN_COLUMNS = (
    "id",
    "workflow_id",
    "workflow_version",
    "contact_id",
    "key",
    "status",
    "position",
    "due_at",
    "waiting_for",
    "started_at",
    "updated_at",
    "finished_at",
    "outcome",
    "reason",
    "trigger_event_id",
    "event",
    "vars",
    "seq",
)
"""The columns of a run row `run_row` gives, in the table's order."""


def run_row(run: Run) -> tuple[Any, ...]:
    """Column values of a run row, in `RUN_COLUMNS` order."""
    return (
        run.id,
        run.workflow_id,
        run.workflow_version,
        run.contact_id,
        run.key,
        run.status.value,
        run.position,
        run.due_at,
        list(run.waiting_for),
        run.started_at,
        run.updated_at,
        run.finished_at,
        run.outcome.value if run.outcome else None,
        run.reason,
        run.trigger_event_id,
        run.event,
        run.vars,
        run.seq,
    )


def run_values(run: Run) -> Values:
    """Column values of a run row by name."""
    return dict(zip(RUN_COLUMNS, run_row(run), strict=True))


def run_from_row(row: RowValues) -> Run:
    """A run from its row. A row's converted values in a plain dict (SQLite's reads on the
    driver) are the run's fields by name, validated as they are: the status and outcome texts
    become their enums and the awaited names a tuple there, without a copy of the row built by
    name first (a third of building a run)."""
    if type(row) is dict:
        return Run.model_validate(row)
    return Run(
        id=row["id"],
        workflow_id=row["workflow_id"],
        workflow_version=row["workflow_version"],
        contact_id=row["contact_id"],
        key=row["key"],
        status=RunStatus(row["status"]),
        position=row["position"],
        due_at=row["due_at"],
        waiting_for=tuple(row["waiting_for"]),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        reason=row["reason"],
        trigger_event_id=row["trigger_event_id"],
        event=row["event"],
        vars=row["vars"],
        seq=row["seq"],
    )


TRACE_COLUMNS = ("at", "contact_id", "workflow_id", "run_id", "step", "kind", "message", "data")
"""The columns of a trace row `trace_row` gives, in the table's order (`id` is the database's)."""


def trace_row(entry: TraceEntry) -> tuple[Any, ...]:
    """Column values of a trace row, in `TRACE_COLUMNS` order (a batch writes many: no mapping
    by name built for each)."""
    return (
        entry.at,
        entry.contact_id,
        entry.workflow_id,
        entry.run_id,
        entry.step,
        entry.kind.value,
        entry.message,
        entry.data,
    )


def trace_values(entry: TraceEntry) -> Values:
    """Column values of a trace row by name (`id` is assigned by the database)."""
    return dict(zip(TRACE_COLUMNS, trace_row(entry), strict=True))


def trace_from_row(row: RowValues) -> TraceEntry:
    """A trace entry from its row."""
    return TraceEntry(
        at=row["at"],
        contact_id=row["contact_id"],
        workflow_id=row["workflow_id"],
        run_id=row["run_id"],
        step=row["step"],
        kind=TraceKind(row["kind"]),
        message=row["message"],
        data=row["data"],
    )


def message_due_at(not_before: datetime, next_attempt_at: datetime | None) -> datetime:
    """When a pending message may next be attempted: not before either time."""
    return not_before if next_attempt_at is None else max(not_before, next_attempt_at)


def delivery_values(message: Message) -> Values:
    """The columns `save_message` replaces: delivery state, never the content."""
    return {
        "status": message.status.value,
        "attempts": message.attempts,
        "not_before": message.not_before,
        "next_attempt_at": message.next_attempt_at,
        "last_error": message.last_error,
        "sent_at": message.sent_at,
        "provider_id": message.provider_id,
        "due_at": message_due_at(message.not_before, message.next_attempt_at),
    }


MESSAGE_COLUMNS = (
    "key",
    "channel",
    "run_id",
    "contact_id",
    "workflow_id",
    "step",
    "to",
    "sender",
    "reply_to",
    "subject",
    "html",
    "text",
    "transactional",
    "created_at",
    "not_before",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "sent_at",
    "provider_id",
    "due_at",
    "lease_until",
)
"""The columns of a new outbox row `message_row` gives, in the table's order."""


def message_row(message: Message) -> tuple[Any, ...]:
    """Column values of a new outbox row, in `MESSAGE_COLUMNS` order (the delivery state's as
    `delivery_values` gives them; no lease)."""
    return (
        message.key,
        message.channel.value,
        message.run_id,
        message.contact_id,
        message.workflow_id,
        message.step,
        message.to,
        message.sender,
        message.reply_to,
        message.subject,
        message.html,
        message.text,
        message.transactional,
        message.created_at,
        message.not_before,
        message.status.value,
        message.attempts,
        message.next_attempt_at,
        message.last_error,
        message.sent_at,
        message.provider_id,
        message_due_at(message.not_before, message.next_attempt_at),
        None,
    )


def message_values(message: Message) -> Values:
    """Column values of a new outbox row by name."""
    return dict(zip(MESSAGE_COLUMNS, message_row(message), strict=True))


def message_from_row(row: RowValues) -> Message:
    """An outbox message from its row."""
    return Message(
        key=row["key"],
        channel=Channel(row["channel"]),
        run_id=row["run_id"],
        contact_id=row["contact_id"],
        workflow_id=row["workflow_id"],
        step=row["step"],
        to=row["to"],
        sender=row["sender"],
        reply_to=row["reply_to"],
        subject=row["subject"],
        html=row["html"],
        text=row["text"],
        transactional=row["transactional"],
        created_at=row["created_at"],
        not_before=row["not_before"],
        status=MessageStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        sent_at=row["sent_at"],
        provider_id=row["provider_id"],
    )
