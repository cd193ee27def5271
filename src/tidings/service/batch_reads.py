"""The records behind a batch of outbox messages, read by key: one query per table where the
unit of work offers bulk reads (`DeliveryBatch`, `ContactBatch`), one per record where not;
and their delivery states saved together (`DeliverySaves`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import cast

from tidings.model.contacts import Contact
from tidings.model.events import Event
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Run
from tidings.ports import ContactBatch, DeliveryBatch, DeliverySaves, UnitOfWork


def _delivery_batch(uow: UnitOfWork) -> DeliveryBatch | None:
    names = ("get_messages", "message_states", "get_runs", "contact_events_many")
    offered = all(callable(getattr(uow, name, None)) for name in names)
    return cast(DeliveryBatch, uow) if offered else None


def messages_by_key(uow: UnitOfWork, keys: Collection[str]) -> dict[str, Message]:
    """The messages with these keys (unknown keys are left out)."""
    batch = _delivery_batch(uow)
    if batch is not None:
        return {m.key: m for m in batch.get_messages(keys)}
    found = (uow.get_message(key) for key in set(keys))
    return {m.key: m for m in found if m is not None}


def message_states(uow: UnitOfWork, keys: Collection[str]) -> dict[str, tuple[MessageStatus, int]]:
    """The (status, attempts) of the messages with these keys (unknown keys are left out)."""
    batch = _delivery_batch(uow)
    if batch is not None:
        return batch.message_states(keys)
    found = (uow.get_message(key) for key in set(keys))
    return {m.key: (m.status, m.attempts) for m in found if m is not None}


def runs_by_id(uow: UnitOfWork, ids: Collection[str]) -> dict[str, Run]:
    """The runs with these ids (unknown ids are left out)."""
    batch = _delivery_batch(uow)
    if batch is not None:
        return {r.id: r for r in batch.get_runs(ids)}
    found = (uow.get_run(run_id) for run_id in set(ids))
    return {r.id: r for r in found if r is not None}


def contacts_by_id(uow: UnitOfWork, ids: Collection[str]) -> dict[str, Contact]:
    """The contacts with these ids (unknown ids are left out)."""
    if not ids:
        return {}
    if callable(getattr(uow, "find_contacts_many", None)):
        return {c.id: c for c in cast(ContactBatch, uow).find_contacts_many((), ids)}
    found = (uow.get_contact(contact_id) for contact_id in set(ids))
    return {c.id: c for c in found if c is not None}


def events_by_contact(
    uow: UnitOfWork,
    contact_ids: Collection[str],
    *,
    names: Collection[str] | None = None,
    since: datetime | None = None,
) -> dict[str, list[Event]]:
    """`contact_events` of each of these contacts (none: an empty list or left out)."""
    if not contact_ids:
        return {}
    found: dict[str, list[Event]] = {}
    batch = _delivery_batch(uow)
    if batch is None:
        for contact_id in set(contact_ids):
            found[contact_id] = uow.contact_events(contact_id, names=names, since=since)
        return found
    for event in batch.contact_events_many(contact_ids, names=names, since=since):
        if event.contact_id is not None:
            found.setdefault(event.contact_id, []).append(event)
    return found


def save_messages(uow: UnitOfWork, messages: Sequence[Message]) -> None:
    """`save_message` of each, in order: in one statement where the unit of work's own class
    offers `save_messages`. Looked up on the class, not the object: a wrapper that passes names
    it does not define through (`__getattr__`) while counting or checking `save_message` must
    still see every save."""
    if callable(getattr(type(uow), "save_messages", None)):
        cast(DeliverySaves, uow).save_messages(messages)
        return
    for message in messages:
        uow.save_message(message)
