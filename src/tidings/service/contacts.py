"""Which contact an incoming event is about: found by any identifier, created on first sight.

The rule when identifiers disagree (docs/ingestion.md): identifiers are looked at in the order
of `IdentifierKind` (contact_id, email_id, ext_id, phone_id, whatsapp_id, landline_number_id);
the contact holding the first one that is known wins and the event is recorded on it. Other
identifiers are attached to the winner only when nobody holds them and the winner has no value
of that kind yet; an identifier that belongs to another contact is never moved (no silent
merge) and is noted on the event in `conflicts` (shown by `GET /v3/events`) and in a `conflict`
trace entry on the winner (`conflict_trace`, shown by `explain`) naming the rule applied.

Ingestion sees contacts through a `ContactBook`, one per transaction: `GroupContacts` reads every
contact a group of requests names in one query, resolves the group's events against them in
memory and saves the changed ones in one go; `StoreContacts` asks the store event by event, for
a unit of work that offers no bulk methods. Both give the same answers.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from tidings.errors import BatchEventError, EventError, StoreError
from tidings.model.contacts import Contact
from tidings.model.events import AttributeValue, Event, IdentifierKind
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import ContactBatch, UnitOfWork

# Brevo's contact ids are integers and JavaScript only counts exactly up to 2**53: new contacts
# get a random id below that, so `identifiers.contact_id` and `GET /v3/events?contact_id=` work
# from every SDK. Collisions are checked inside the writing transaction.
_MAX_CONTACT_ID = 2**53 - 1
_ID_ATTEMPTS = 16
GENERAL = "*"  # the trace's workflow for entries about the contact itself (see explain)
# Read per event and identifier: iterating the Enum and reading its members cost more than the
# dictionary lookups they feed.
_KIND_ORDER = tuple(IdentifierKind)
_CONTACT_ID_KIND = IdentifierKind.contact_id


def random_contact_id() -> str:
    """A fresh contact id: a random positive integer that JavaScript can hold exactly."""
    return str(secrets.randbelow(_MAX_CONTACT_ID - 1) + 1)


@dataclass
class Resolution:
    """The contact an event belongs to, how it changes, and what could not be attached."""

    contact: Contact
    is_new: bool
    changed: bool
    conflicts: dict[IdentifierKind, str] = field(default_factory=dict)
    won_by: tuple[IdentifierKind, str] | None = None  # the first known identifier (None: new)


def owner_of(kind: IdentifierKind, value: str, contacts: Mapping[str, Contact]) -> Contact | None:
    """The contact holding this identifier, among those found."""
    for contact in contacts.values():
        if kind is _CONTACT_ID_KIND:
            if contact.id == value:
                return contact
        elif contact.identifiers.get(kind) == value:
            return contact
    return None


def resolve(
    event: Event,
    known: Mapping[str, Contact],
    *,
    now: datetime,
    new_id: Callable[[], str],
) -> Resolution:
    """Apply the resolution rule to an event, given the contacts its identifiers point at."""
    winner: Contact | None = None
    won_by: tuple[IdentifierKind, str] | None = None
    for kind in _KIND_ORDER:
        value = event.identifiers.get(kind)
        if value is not None and (winner := owner_of(kind, value, known)) is not None:
            won_by = (kind, value)
            break
    is_new = winner is None
    contact_id = new_id() if winner is None else winner.id
    held = winner.identifiers if winner is not None else {}
    identifiers = dict(held)
    conflicts: dict[IdentifierKind, str] = {}
    for kind, value in event.identifiers.items():
        if kind is _CONTACT_ID_KIND:
            continue  # the id itself, never stored as an identifier
        owner = owner_of(kind, value, known)
        if owner is not None and owner.id != contact_id:
            conflicts[kind] = f"belongs to contact {owner.id}"
        elif kind not in identifiers:
            identifiers[kind] = value
        elif identifiers[kind] != value:
            conflicts[kind] = f"contact {contact_id} already has {kind.value} {identifiers[kind]!r}"
    if winner is None:
        # Built whole at once: a new contact has nothing of its own yet.
        attributes = merged_attributes({}, event.contact_properties)
        winner = Contact(
            id=contact_id,
            identifiers=identifiers,
            attributes=attributes,
            created_at=now,
            updated_at=now,
        )
        changed = True
    else:
        attributes = merged_attributes(winner.attributes, event.contact_properties)
        changed = identifiers != held or attributes != winner.attributes
        if changed:
            winner = winner.model_copy(
                update={"identifiers": identifiers, "attributes": attributes, "updated_at": now}
            )
    return Resolution(
        contact=winner, is_new=is_new, changed=changed, conflicts=conflicts, won_by=won_by
    )


def conflict_trace(event: Event, resolution: Resolution) -> list[TraceEntry]:
    """The trace of an event's identifiers that were not attached: which, why, and the rule."""
    if not resolution.conflicts:
        return []
    contact = resolution.contact
    if resolution.won_by is None:
        rule = "it was recorded on a new contact"
    else:
        kind, value = resolution.won_by
        rule = (
            f"the event was recorded on contact {contact.id}, which holds its first known "
            f"identifier ({kind.value} {value!r}); nothing was moved or merged"
        )
    return [
        TraceEntry(
            at=event.received_at,
            contact_id=contact.id,
            workflow_id=GENERAL,
            kind=TraceKind.conflict,
            message=(
                f"event {event.name} ({event.id}): {kind.value} "
                f"{event.identifiers.get(kind, '')!r} not attached ({note}); {rule}"
            ),
            data={"event_id": event.id, "identifier": kind.value, "conflict": note},
        )
        for kind, note in resolution.conflicts.items()
    ]


def merged_attributes(
    current: Mapping[str, Any], updates: Mapping[str, AttributeValue]
) -> dict[str, Any]:
    """Attributes after an event's `contact_properties`, JSON types kept as sent."""
    merged = dict(current)
    for key, value in updates.items():
        # `1 == True` in Python: compare types too, so an attribute turning from 1 to true
        # counts as a change.
        if key not in merged or type(merged[key]) is not type(value) or merged[key] != value:
            merged[key] = value
    return merged


def check_contact_ids(book: ContactBook, events: Sequence[Event], *, batch: bool) -> None:
    """Refuse events naming a `contact_id` that does not exist (ids are ours to give)."""
    missing: list[tuple[int, EventError]] = []
    for index, event in enumerate(events):
        contact_id = event.identifiers.get(_CONTACT_ID_KIND)
        if contact_id is not None and not book.exists(contact_id):
            missing.append(
                (index, EventError("identifiers.contact_id", f"no contact with id {contact_id}"))
            )
    if not missing:
        return
    if not batch:
        raise missing[0][1]
    raise BatchEventError(missing)


def known_contacts(uow: UnitOfWork, event: Event) -> dict[str, Contact]:
    """The existing contacts this event's identifiers point at, by id."""
    found = {c.id: c for c in uow.find_contacts(_lookup_identifiers(event))}
    contact_id = event.identifiers.get(_CONTACT_ID_KIND)
    if contact_id is not None and contact_id not in found:
        contact = uow.get_contact(contact_id)
        if contact is not None:
            found[contact.id] = contact
    return found


def _lookup_identifiers(event: Event) -> dict[IdentifierKind, str]:
    return {k: v for k, v in event.identifiers.items() if k is not _CONTACT_ID_KIND}


def unused_contact_id(uow: UnitOfWork, new_id: Callable[[], str]) -> Callable[[], str]:
    """Wrap an id source so it never returns an id already taken in this store."""

    def fresh() -> str:
        for _ in range(_ID_ATTEMPTS):
            candidate = new_id()
            if uow.get_contact(candidate) is None:
                return candidate
        raise StoreError("could not find an unused contact id")  # pragma: no cover

    return fresh


class ContactBook(Protocol):
    """The contacts of one transaction's events, as ingestion reads and changes them."""

    def exists(self, contact_id: str) -> bool:
        """Whether a contact has this id."""
        ...

    def known(self, event: Event) -> dict[str, Contact]:
        """The existing contacts this event's identifiers point at, by id."""
        ...

    def new_id(self) -> str:
        """An id no contact has."""
        ...

    def save(self, contact: Contact) -> None:
        """Insert or replace a contact (in the store by `flush` at the latest)."""
        ...

    def flush(self) -> None:
        """Write what `save` was given and not yet written."""
        ...


def contact_book(
    uow: UnitOfWork, events: Sequence[Event], new_id: Callable[[], str]
) -> ContactBook:
    """The book for these events: in memory over the store's bulk methods when it has them."""
    if callable(getattr(uow, "find_contacts_many", None)) and callable(
        getattr(uow, "save_contacts", None)
    ):
        return GroupContacts(cast(ContactBatch, uow), events, new_id)
    return StoreContacts(uow, new_id)


class StoreContacts:
    """A book that asks the store for each event and writes each change at once."""

    def __init__(self, uow: UnitOfWork, new_id: Callable[[], str]) -> None:
        self._uow = uow
        self._fresh = unused_contact_id(uow, new_id)

    def exists(self, contact_id: str) -> bool:
        """Whether a contact has this id."""
        return self._uow.get_contact(contact_id) is not None

    def known(self, event: Event) -> dict[str, Contact]:
        """The existing contacts this event's identifiers point at, by id."""
        return known_contacts(self._uow, event)

    def new_id(self) -> str:
        """An id no contact has (one lookup per candidate)."""
        return self._fresh()

    def save(self, contact: Contact) -> None:
        """Save the contact now."""
        self._uow.save_contact(contact)

    def flush(self) -> None:
        """Nothing waits: every save was written at once."""


class GroupContacts:
    """A book over every contact a group of events names, read in one query; changes are kept
    in memory, so later events of the group see them, and saved in one go by `flush`."""

    def __init__(
        self, batch: ContactBatch, events: Sequence[Event], new_id: Callable[[], str]
    ) -> None:
        self._batch = batch
        self._new_id = new_id
        self._contacts: dict[str, Contact] = {}
        self._owners: dict[tuple[IdentifierKind, str], str] = {}
        self._changed: dict[str, Contact] = {}
        pairs = {
            (kind, value)
            for event in events
            for kind, value in event.identifiers.items()
            if kind is not _CONTACT_ID_KIND
        }
        ids = {
            contact_id
            for event in events
            if (contact_id := event.identifiers.get(_CONTACT_ID_KIND)) is not None
        }
        for contact in batch.find_contacts_many(pairs, ids) if pairs or ids else ():
            self._remember(contact)
        # Ids for the contacts this group may create, checked against the store together: at
        # most one per event that names no contact the store knows.
        self._fresh = deque(self._unused_ids(sum(map(self._may_create, events))))

    def _may_create(self, event: Event) -> bool:
        return not any(
            kind is _CONTACT_ID_KIND or (kind, value) in self._owners
            for kind, value in event.identifiers.items()
        )

    def _unused_ids(self, count: int) -> list[str]:
        found: dict[str, None] = {}  # in the order drawn
        for _ in range(_ID_ATTEMPTS):
            if len(found) >= count:
                break
            candidates: dict[str, None] = {}
            for _ in range(count - len(found)):
                candidate = self._new_id()
                if candidate not in self._contacts and candidate not in found:
                    candidates[candidate] = None
            taken = {c.id for c in self._batch.find_contacts_many((), candidates)}
            found.update((candidate, None) for candidate in candidates if candidate not in taken)
        if len(found) < count:
            raise StoreError("could not find an unused contact id")  # pragma: no cover
        return list(found)

    def _remember(self, contact: Contact) -> None:
        self._contacts[contact.id] = contact
        for kind, value in contact.identifiers.items():
            self._owners[(kind, value)] = contact.id

    def exists(self, contact_id: str) -> bool:
        """Whether a contact has this id (in the store or new in this group)."""
        return contact_id in self._contacts

    def known(self, event: Event) -> dict[str, Contact]:
        """The existing contacts this event's identifiers point at, by id."""
        found: dict[str, Contact] = {}
        for kind, value in event.identifiers.items():
            owner = value if kind is _CONTACT_ID_KIND else self._owners.get((kind, value))
            if owner is not None and (contact := self._contacts.get(owner)) is not None:
                found[owner] = contact
        return found

    def new_id(self) -> str:
        """An id no contact has, from those checked when the book was made."""
        if not self._fresh:
            self._fresh.extend(self._unused_ids(1))
        return self._fresh.popleft()

    def save(self, contact: Contact) -> None:
        """Keep the contact's new state for the rest of the group and for `flush`."""
        old = self._contacts.get(contact.id)
        for kind, value in old.identifiers.items() if old else ():
            if contact.identifiers.get(kind) != value:
                self._owners.pop((kind, value), None)
        self._remember(contact)
        self._changed[contact.id] = contact

    def flush(self) -> None:
        """Save every contact changed since the last flush, in one call."""
        if self._changed:
            self._batch.save_contacts(list(self._changed.values()))
            self._changed.clear()
