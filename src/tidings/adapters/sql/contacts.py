"""Contacts and their identifiers in SQL: each (kind, value) belongs to at most one contact."""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from tidings.adapters.sql import mapping
from tidings.adapters.sql.statements import Queries, chunks
from tidings.adapters.sql.tables import contact_identifiers, contacts
from tidings.errors import StoreError
from tidings.model.contacts import Contact
from tidings.model.events import IdentifierKind

_ci = contact_identifiers
_contacts = contacts
_LOCK_CONTACT = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:contact_id, 0))")
# The same locks for many contacts, taken in the order of their lock keys: any two transactions
# then take the keys they share in the same order, so neither waits for the other in a cycle
# (ids sorted as text would not do: two ids may share a key). The ORDER BY in the subquery keeps
# it from being flattened, so the locks are taken in that order.
_LOCK_CONTACTS = sa.text(
    "SELECT pg_advisory_xact_lock(lock_key) FROM ("
    "SELECT DISTINCT hashtextextended(contact_id, 0) AS lock_key"
    " FROM unnest(CAST(:contact_ids AS text[])) AS given(contact_id) ORDER BY lock_key"
    ") AS lock_keys"
)


def _any_identifier(pairs: Collection[tuple[str, str]]) -> sa.ColumnElement[bool]:
    """`(kind, value)` is one of `pairs` (a handful: an OR of primary-key lookups)."""
    return sa.or_(*(sa.and_(_ci.c.kind == kind, _ci.c.value == value) for kind, value in pairs))


def _load_statement(postgres: bool, where: sa.ColumnElement[bool]) -> sa.Select[tuple[object, ...]]:
    """Contacts matching `where`, each joined with its identifiers, oldest first."""
    order = contacts.c.id.collate("C") if postgres else contacts.c.id
    return (
        sa.select(contacts, _ci.c.kind.label("id_kind"), _ci.c.value.label("id_value"))
        .outerjoin(_ci, _ci.c.contact_id == contacts.c.id)
        .where(where)
        .order_by(contacts.c.created_at, order)
    )


# Looked up for every event and timer: built once per dialect (and per number of identifiers)
# with bound values, so SQLAlchemy neither rebuilds the statement nor its cache key per call.
@functools.cache
def _by_id(postgres: bool) -> sa.Select[tuple[object, ...]]:
    return _load_statement(postgres, contacts.c.id == sa.bindparam("contact_id", type_=sa.Text()))


@functools.cache
def _by_identifiers(postgres: bool, count: int) -> sa.Select[tuple[object, ...]]:
    pairs = [
        sa.and_(
            _ci.c.kind == sa.bindparam(f"kind_{i}", type_=sa.Text()),
            _ci.c.value == sa.bindparam(f"value_{i}", type_=sa.Text()),
        )
        for i in range(count)
    ]
    owners = sa.select(_ci.c.contact_id).where(sa.or_(*pairs))
    return _load_statement(postgres, contacts.c.id.in_(owners))


# The bulk lookups (`ContactBatch`): one statement per chunk of values, whatever the group size.
@functools.cache
def _in_ids(postgres: bool) -> sa.Select[tuple[object, ...]]:
    return _load_statement(postgres, contacts.c.id.in_(sa.bindparam("ids", expanding=True)))


@functools.cache
def _owning(postgres: bool) -> sa.Select[tuple[object, ...]]:
    """Contacts holding any of a chunk of values of one identifier kind, read with all their
    identifiers in the same statement."""
    owners = sa.select(_ci.c.contact_id).where(
        _ci.c.kind == sa.bindparam("kind", type_=sa.Text()),
        _ci.c.value.in_(sa.bindparam("values", expanding=True)),
    )
    return _load_statement(postgres, contacts.c.id.in_(owners))


_OWNERS_BY_VALUE = sa.select(_ci.c.kind, _ci.c.value, _ci.c.contact_id).where(
    _ci.c.kind == sa.bindparam("kind"), _ci.c.value.in_(sa.bindparam("values", expanding=True))
)
_HELD_BY = sa.select(_ci.c.kind, _ci.c.value, _ci.c.contact_id).where(
    _ci.c.contact_id.in_(sa.bindparam("ids", expanding=True))
)
_DROP_IDENTIFIER = sa.delete(_ci).where(
    _ci.c.kind == sa.bindparam("b_kind"), _ci.c.value == sa.bindparam("b_value")
)

Pair = tuple[str, str]


def _by_kind(pairs: Iterable[Pair]) -> Iterator[tuple[str, Sequence[str]]]:
    """(kind, a chunk of its values) for a set of identifiers: each chunk is one indexed query."""
    values: dict[str, list[str]] = {}
    for kind, value in pairs:
        values.setdefault(kind, []).append(value)
    for kind, held in sorted(values.items()):
        for part in chunks(sorted(held)):
            yield kind, part


class ContactQueries(Queries):
    """The `ContactStore` port over one connection."""

    def find_contacts(self, identifiers: Mapping[IdentifierKind, str]) -> list[Contact]:
        """Every contact holding any of these identifiers, oldest first."""
        if not identifiers:
            return []
        values: dict[str, str] = {}
        for i, (kind, value) in enumerate(identifiers.items()):
            values[f"kind_{i}"] = IdentifierKind(kind).value
            values[f"value_{i}"] = value
        return self._load(_by_identifiers(self._postgres, len(identifiers)), values)

    def lock_contact(self, contact_id: str) -> None:
        """On PostgreSQL a transaction-scoped advisory lock on the contact; SQLite transactions
        are already serialised (BEGIN IMMEDIATE), so there it costs nothing."""
        if self._postgres:
            self._execute(_LOCK_CONTACT, {"contact_id": contact_id})

    def lock_contacts(self, contact_ids: Collection[str]) -> None:
        """`lock_contact` for each, in one statement, in the order of the lock keys."""
        if self._postgres and contact_ids:
            self._execute(_LOCK_CONTACTS, {"contact_ids": sorted(set(contact_ids))})

    def get_contact(self, contact_id: str) -> Contact | None:
        """One contact by id."""
        found = self._load(_by_id(self._postgres), {"contact_id": contact_id})
        return found[0] if found else None

    def get_contacts(self, contact_ids: Collection[str]) -> dict[str, Contact]:
        """The contacts among these ids that exist, by id (one query per chunk of ids)."""
        found: dict[str, Contact] = {}
        for part in chunks(sorted(set(contact_ids))):
            rows = self._select_rows(_in_ids(self._postgres), {"ids": part})
            found.update((c.id, c) for c in _contacts_of(rows))
        return found

    def save_contact(self, contact: Contact) -> None:
        """Insert or replace a contact and its identifiers; an identifier held by another
        contact is refused with a StoreError (moving it is the caller's decision)."""
        wanted = {(IdentifierKind(k).value, v) for k, v in contact.identifiers.items()}
        # One query finds both this contact's current identifiers and the owners of the new ones.
        mine = _ci.c.contact_id == contact.id
        rows = self._execute(
            sa.select(_ci.c.kind, _ci.c.value, _ci.c.contact_id).where(
                sa.or_(mine, _any_identifier(wanted)) if wanted else mine
            )
        ).all()
        held = {(kind, value) for kind, value, owner in rows if owner == contact.id}
        for kind, value, owner in sorted(rows):
            if owner != contact.id:
                raise StoreError(f"identifier {kind}={value!r} belongs to contact {owner!r}")
        self._upsert(contacts, [mapping.contact_values(contact)], "id")
        if gone := held - wanted:
            self._execute(sa.delete(_ci).where(mine, _any_identifier(gone)))
        if new := wanted - held:
            self._execute(
                sa.insert(_ci),
                [{"kind": k, "value": v, "contact_id": contact.id} for k, v in sorted(new)],
            )

    def find_contacts_many(
        self, identifiers: Collection[tuple[IdentifierKind, str]], ids: Collection[str] = ()
    ) -> list[Contact]:
        """Every contact holding any of these identifiers or having one of these ids, oldest
        first: one query per chunk of a thousand identifiers of a kind, one per chunk of ids."""
        pairs = {(IdentifierKind(kind).value, value) for kind, value in identifiers}
        found: dict[str, Contact] = {}
        # Owners read with their identifiers in one statement per chunk (not their ids first,
        # then the contacts: the group's lookup read each row twice).
        for kind, part in _by_kind(pairs):
            values = {"kind": kind, "values": list(part)}
            found.update((c.id, c) for c in self._load(_owning(self._postgres), values))
        for part in chunks(sorted(set(ids) - found.keys())):
            found.update((c.id, c) for c in self._load(_in_ids(self._postgres), {"ids": part}))
        return sorted(found.values(), key=lambda c: (c.created_at, c.id))

    def save_contacts(self, contacts: Sequence[Contact]) -> None:
        """`save_contact` for each, as if one after the other, in a few statements for all;
        any refusal saves none. The last state given for an id wins."""
        latest = {contact.id: contact for contact in contacts}
        if not latest:
            return
        wanted = {
            cid: {(IdentifierKind(k).value, v) for k, v in contact.identifiers.items()}
            for cid, contact in latest.items()
        }
        rows = set(self._owners(set().union(*wanted.values())))
        for part in chunks(sorted(latest)):
            rows.update(_triples(self._select_rows(_HELD_BY, {"ids": part})))
        stored = {(kind, value): owner for kind, value, owner in rows}
        after: dict[Pair, str | None] = {}  # each identifier's owner once the saves are done
        for cid in latest:
            after.update((pair, None) for pair, owner in stored.items() if owner == cid)
            for kind, value in sorted(wanted[cid]):
                owner = after.get((kind, value), stored.get((kind, value)))
                if owner is not None and owner != cid:
                    raise StoreError(f"identifier {kind}={value!r} belongs to contact {owner!r}")
            after.update((pair, cid) for pair in wanted[cid])
        self._upsert(_contacts, [mapping.contact_values(c) for c in latest.values()], "id")
        # Identifiers a contact of this call gave up (freed, or taken by another one of them).
        moved = [pair for pair, owner in after.items() if pair in stored and stored[pair] != owner]
        if moved:
            self._execute(_DROP_IDENTIFIER, [{"b_kind": k, "b_value": v} for k, v in moved])
        new = [
            {"kind": kind, "value": value, "contact_id": owner}
            for (kind, value), owner in sorted(after.items())
            if owner is not None and stored.get((kind, value)) != owner
        ]
        # On the driver's cursor: SQLAlchemy's executemany cost more than SQLite's inserts.
        self._insert_many(_ci, new)

    def _owners(self, pairs: Collection[Pair]) -> Iterator[tuple[str, str, str]]:
        """(kind, value, contact id) of each of these identifiers that a contact holds."""
        for kind, part in _by_kind(pairs):
            yield from _triples(self._select_rows(_OWNERS_BY_VALUE, {"kind": kind, "values": part}))

    def _load(
        self, stmt: sa.Select[tuple[object, ...]], values: Mapping[str, object]
    ) -> list[Contact]:
        """Contacts a `_load_statement` finds, with all their identifiers, oldest first (read
        on SQLite's cursor: run for every group and event, SQLAlchemy's per-statement work cost
        several times SQLite's)."""
        return _contacts_of(self._select_rows(stmt, values))


def _triples(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str, str]]:
    """(kind, value, contact id) of `_OWNERS_BY_VALUE` or `_HELD_BY` rows."""
    for row in rows:
        yield row["kind"], row["value"], row["contact_id"]


def _contacts_of(rows: Iterable[mapping.RowValues]) -> list[Contact]:
    """Contacts from `_load_statement` rows (one per identifier), in the rows' order."""
    contact_rows: dict[str, mapping.RowValues] = {}
    identifiers: dict[str, dict[str, str]] = {}
    for row in rows:
        contact_rows.setdefault(row["id"], row)
        held = identifiers.setdefault(row["id"], {})
        if row["id_kind"] is not None:
            held[row["id_kind"]] = row["id_value"]
    return [mapping.contact_from_row(contact_rows[cid], identifiers[cid]) for cid in contact_rows]
