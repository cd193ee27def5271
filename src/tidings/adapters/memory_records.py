"""What the in-memory store holds and how: records kept as the SQL store would give them back
(UTC times, JSON fields through a JSON round trip, copies out), and the journal that undoes a
transaction that raised."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from tidings.adapters.clock import as_utc
from tidings.errors import StoreError
from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.messages import Message
from tidings.model.runs import Run
from tidings.model.trace import TraceEntry

M = TypeVar("M", bound=BaseModel)
MISSING: Any = object()
KIND_ORDER = {kind: n for n, kind in enumerate(IdentifierKind)}
# Fields stored as JSON by the SQL store: here they make the same round trip, so a value SQL
# would refuse (a datetime, NaN) is refused here too, and stored data never aliases the caller's.
JSON_FIELDS = {
    Contact: ("attributes",),
    Event: ("properties", "contact_properties", "object"),
    Run: ("event", "vars"),
    TraceEntry: ("data",),
}


# Fields `save_message` replaces; the content (to, subject, bodies...) is fixed once recorded.
DELIVERY_STATE = (
    "status",
    "attempts",
    "not_before",
    "next_attempt_at",
    "last_error",
    "sent_at",
    "provider_id",
)


def utc(value: datetime) -> datetime:
    """The time in UTC; a naive one is refused as the SQL store refuses it."""
    try:
        return as_utc(value)
    except ValueError as exc:
        raise StoreError(str(exc)) from exc


def json_copy(value: Any) -> Any:
    """The value after a JSON round trip (what SQL would store and give back)."""
    return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))


def stored(model: M) -> M:
    """The model as the store keeps it: every datetime in UTC, JSON fields copied through JSON."""
    json_fields = JSON_FIELDS.get(type(model), ())
    update: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        try:
            if isinstance(value, datetime):
                update[name] = as_utc(value)
            elif name in json_fields:
                update[name] = json_copy(value)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{type(model).__name__}.{name}: {exc}") from exc
    return model.model_copy(update=update)


def out(model: M) -> M:
    """A copy for the caller, so mutating a returned dict never edits the store."""
    return model.model_copy(deep=True)


def ordered(contact: Contact) -> Contact:
    """The contact with its identifiers in lookup order, as the SQL store reads them back."""
    ordered = dict(sorted(contact.identifiers.items(), key=lambda kv: KIND_ORDER[kv[0]]))
    return contact.model_copy(update={"identifiers": ordered})


def message_due(message: Message) -> datetime:
    """When a pending message may next be attempted: not before either time."""
    if message.next_attempt_at is None:
        return message.not_before
    return max(message.not_before, message.next_attempt_at)


class Journal:
    """Undo steps for one transaction, replayed backwards on rollback."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def put(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        """Set a key, remembering how to undo it."""
        old = mapping.get(key, MISSING)
        mapping[key] = value
        if old is MISSING:
            self._undo.append(lambda: mapping.pop(key, None))
        else:
            self._undo.append(lambda: mapping.__setitem__(key, old))

    def pop(self, mapping: dict[Any, Any], key: Any) -> None:
        """Remove a key, remembering how to undo it."""
        if key in mapping:
            old = mapping.pop(key)
            self._undo.append(lambda: mapping.__setitem__(key, old))

    def append(self, items: list[Any], value: Any) -> None:
        """Append a value, remembering how to undo it."""
        items.append(value)
        self._undo.append(items.pop)

    def add(self, items: set[Any], value: Any) -> None:
        """Add to a set, remembering how to undo it."""
        if value not in items:
            items.add(value)
            self._undo.append(lambda: items.discard(value))

    def rollback(self) -> None:
        """Undo every step, newest first."""
        while self._undo:
            self._undo.pop()()


@dataclass
class State:
    """Everything the memory store holds, with the indexes its queries use."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    owners: dict[tuple[IdentifierKind, str], str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)  # events[seq - 1]
    dedup: dict[str, int] = field(default_factory=dict)
    processed: set[int] = field(default_factory=set)
    # Every seq below marks["low_water"] is processed: claims start scanning there.
    marks: dict[str, int] = field(default_factory=lambda: {"low_water": 1})
    events_by_contact: dict[str, list[int]] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    runs_by_contact: dict[str, dict[str, None]] = field(default_factory=dict)
    trace: list[TraceEntry] = field(default_factory=list)
    trace_by_contact: dict[str, list[int]] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    leases: dict[str, datetime] = field(default_factory=dict)
    versions: dict[tuple[str, str], str] = field(default_factory=dict)
