"""Which contact an incoming event is about: found by any identifier, created on first sight.

The rule when identifiers disagree (docs/ingestion.md): identifiers are looked at in the order
of `IdentifierKind` (contact_id, email_id, ext_id, phone_id, whatsapp_id, landline_number_id);
the contact holding the first one that is known wins and the event is recorded on it. Other
identifiers are attached to the winner only when nobody holds them and the winner has no value
of that kind yet; an identifier that belongs to another contact is never moved (no silent
merge) and is noted on the event in `conflicts`, which explain and the trace show.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tidings.errors import BatchEventError, EventError, StoreError
from tidings.model.contacts import Contact
from tidings.model.events import AttributeValue, Event, IdentifierKind
from tidings.ports import UnitOfWork

# Brevo's contact ids are integers and JavaScript only counts exactly up to 2**53: new contacts
# get a random id below that, so `identifiers.contact_id` and `GET /v3/events?contact_id=` work
# from every SDK. Collisions are checked inside the writing transaction.
_MAX_CONTACT_ID = 2**53 - 1


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


def owner_of(kind: IdentifierKind, value: str, contacts: Mapping[str, Contact]) -> Contact | None:
    """The contact holding this identifier, among those found."""
    for contact in contacts.values():
        if kind is IdentifierKind.contact_id:
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
    for kind in IdentifierKind:
        value = event.identifiers.get(kind)
        if value is not None and (winner := owner_of(kind, value, known)) is not None:
            break
    is_new = winner is None
    if winner is None:
        winner = Contact(id=new_id(), created_at=now, updated_at=now)
    identifiers = dict(winner.identifiers)
    conflicts: dict[IdentifierKind, str] = {}
    for kind, value in event.identifiers.items():
        if kind is IdentifierKind.contact_id:
            continue  # the id itself, never stored as an identifier
        owner = owner_of(kind, value, known)
        if owner is not None and owner.id != winner.id:
            conflicts[kind] = f"belongs to contact {owner.id}"
        elif kind not in identifiers:
            identifiers[kind] = value
        elif identifiers[kind] != value:
            conflicts[kind] = f"contact {winner.id} already has {kind.value} {identifiers[kind]!r}"
    attributes = merged_attributes(winner.attributes, event.contact_properties)
    changed = is_new or identifiers != winner.identifiers or attributes != winner.attributes
    if changed:
        winner = winner.model_copy(
            update={"identifiers": identifiers, "attributes": attributes, "updated_at": now}
        )
    return Resolution(contact=winner, is_new=is_new, changed=changed, conflicts=conflicts)


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


def check_contact_ids(uow: UnitOfWork, events: list[Event], *, batch: bool) -> None:
    """Refuse events naming a `contact_id` that does not exist (ids are ours to give)."""
    missing: list[tuple[int, EventError]] = []
    for index, event in enumerate(events):
        contact_id = event.identifiers.get(IdentifierKind.contact_id)
        if contact_id is not None and uow.get_contact(contact_id) is None:
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
    contact_id = event.identifiers.get(IdentifierKind.contact_id)
    if contact_id is not None and contact_id not in found:
        contact = uow.get_contact(contact_id)
        if contact is not None:
            found[contact.id] = contact
    return found


def _lookup_identifiers(event: Event) -> dict[IdentifierKind, str]:
    return {k: v for k, v in event.identifiers.items() if k is not IdentifierKind.contact_id}


def unused_contact_id(uow: UnitOfWork, new_id: Callable[[], str]) -> Callable[[], str]:
    """Wrap an id source so it never returns an id already taken in this store."""

    def fresh() -> str:
        for _ in range(16):
            candidate = new_id()
            if uow.get_contact(candidate) is None:
                return candidate
        raise StoreError("could not find an unused contact id")  # pragma: no cover

    return fresh
