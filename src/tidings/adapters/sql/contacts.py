"""Contacts and their identifiers in SQL: each (kind, value) belongs to at most one contact."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import sqlalchemy as sa

from tidings.adapters.sql import mapping
from tidings.adapters.sql.statements import Queries
from tidings.adapters.sql.tables import contact_identifiers, contacts
from tidings.errors import StoreError
from tidings.model.contacts import Contact
from tidings.model.events import IdentifierKind

_ci = contact_identifiers
_LOCK_CONTACT = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:contact_id, 0))")


def _any_identifier(pairs: Collection[tuple[str, str]]) -> sa.ColumnElement[bool]:
    """`(kind, value)` is one of `pairs` (a handful: an OR of primary-key lookups)."""
    return sa.or_(*(sa.and_(_ci.c.kind == kind, _ci.c.value == value) for kind, value in pairs))


class ContactQueries(Queries):
    """The `ContactStore` port over one connection."""

    def find_contacts(self, identifiers: Mapping[IdentifierKind, str]) -> list[Contact]:
        """Every contact holding any of these identifiers, oldest first."""
        if not identifiers:
            return []
        pairs = [(IdentifierKind(kind).value, value) for kind, value in identifiers.items()]
        owners = sa.select(_ci.c.contact_id).where(_any_identifier(pairs))
        return self._load(contacts.c.id.in_(owners))

    def lock_contact(self, contact_id: str) -> None:
        """On PostgreSQL a transaction-scoped advisory lock on the contact; SQLite transactions
        are already serialised (BEGIN IMMEDIATE), so there it costs nothing."""
        if self._postgres:
            self._execute(_LOCK_CONTACT, {"contact_id": contact_id})

    def get_contact(self, contact_id: str) -> Contact | None:
        """One contact by id."""
        found = self._load(contacts.c.id == contact_id)
        return found[0] if found else None

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

    def _load(self, where: sa.ColumnElement[bool]) -> list[Contact]:
        """Contacts matching `where` with all their identifiers, in one query, oldest first."""
        stmt = (
            sa.select(contacts, _ci.c.kind.label("id_kind"), _ci.c.value.label("id_value"))
            .outerjoin(_ci, _ci.c.contact_id == contacts.c.id)
            .where(where)
            .order_by(contacts.c.created_at, self._text_order(contacts.c.id))
        )
        rows: dict[str, sa.RowMapping] = {}
        identifiers: dict[str, dict[str, str]] = {}
        for row in self._execute(stmt).mappings():
            rows.setdefault(row["id"], row)
            held = identifiers.setdefault(row["id"], {})
            if row["id_kind"] is not None:
                held[row["id_kind"]] = row["id_value"]
        return [mapping.contact_from_row(rows[cid], identifiers[cid]) for cid in rows]
