"""The outbox in SQL: idempotent inserts by key, leased claims, delivery state updates."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from tidings.adapters.sql import mapping
from tidings.adapters.sql.driver import DriverStatement, driver_statement, update_by_key
from tidings.adapters.sql.statements import Queries
from tidings.adapters.sql.tables import messages
from tidings.errors import StoreError
from tidings.model.messages import Message, MessageStatus

_m = messages
_PENDING = _m.c.status == sa.literal_column(f"'{MessageStatus.pending.value}'")
_SENDING = _m.c.status == sa.literal_column(f"'{MessageStatus.sending.value}'")


_WHERE_KEY = "where_key"


# Bounded: a dialect is one engine's, and tests make many engines.
@functools.lru_cache(maxsize=64)
def _save_statement(
    dialect: Dialect, columns: tuple[str, ...], returning: bool = True
) -> DriverStatement:
    """`UPDATE messages SET columns WHERE key = ... [RETURNING key]`, compiled once per dialect:
    it runs once per outcome, and SQLAlchemy's building of it cost more than the update."""
    return update_by_key(dialect, _m, _m.c.key, _WHERE_KEY, columns, returning=returning)


def _columns(row: dict[str, Any]) -> tuple[str, ...]:
    """The columns a `_delivery_row` sets (all but the key it ends with)."""
    return tuple(row)[:-1]


@functools.cache
def _next_message_due() -> sa.Select[Any]:
    """The earliest pending message's due time and `sending` lease's end, built once: asked
    after every pass of the daemon's engine. Two scalar subqueries, each answered from the
    (status, due_at) index or a few rows."""
    pending = sa.select(sa.func.min(_m.c.due_at)).where(_PENDING).scalar_subquery()
    leased = sa.select(sa.func.min(_m.c.lease_until)).where(_SENDING).scalar_subquery()
    return sa.select(pending.label("pending"), leased.label("leased"))


class OutboxQueries(Queries):
    """The `Outbox` port over one connection."""

    def add_messages(self, messages: Sequence[Message]) -> int:
        """Insert messages whose key is new; return how many were new."""
        if not messages:
            return 0
        stmt = cast(sa.ClauseElement, self._ignoring(_m, "key"))
        columns = mapping.MESSAGE_COLUMNS
        insert = driver_statement(self._conn.dialect, stmt, _m, columns)
        # One executemany on the driver's cursor (a batch's messages come together); a row whose
        # key exists changes nothing, so the rows changed are the new ones.
        row, values = mapping.message_row, mapping.message_values
        return self._driver_many_of(insert, columns, messages, row, values)

    def claim_messages(self, now: datetime, limit: int, lease: timedelta) -> list[Message]:
        """Due pending messages (and `sending` ones whose lease expired), now marked sending.

        The lease is how long the claimant may take; past it, another worker may claim the
        message again (its sender died). Earliest due first.
        """
        # A `sending` row without a lease (recorded so, never claimed) counts as expired:
        # better claimed again than stuck for ever.
        lapsed = sa.or_(_m.c.lease_until.is_(None), _m.c.lease_until <= now)
        # Pending and lapsed messages asked apart, each in the (status, due_at, key) index's
        # order, then merged: asked as one OR, every due message was read and sorted at every
        # claim, so a backlog of 30,000 cost each claim of 100 about 32 ms. Sending messages are
        # the few in flight (or a dead worker's); their read stays small.
        due = [
            *self._due_keys(sa.and_(_PENDING, _m.c.due_at <= now), limit),
            *self._due_keys(sa.and_(_SENDING, lapsed), limit),
        ]
        # Python orders text by code point, as `_text_order` makes both dialects do.
        keys = [key for _, key in sorted(due)[:limit]]
        if not keys:
            return []
        rows = self._execute(
            sa.update(_m)
            .where(_m.c.key.in_(keys))
            .values(status=MessageStatus.sending.value, lease_until=now + lease)
            .returning(*_m.c)
        ).mappings()
        ordered = sorted(rows, key=lambda row: (row["due_at"], row["key"]))
        return [mapping.message_from_row(row) for row in ordered]

    def _due_keys(self, due: sa.ColumnElement[bool], limit: int) -> list[tuple[datetime, str]]:
        """The first `limit` (due_at, key) of the messages `due` selects, in the claim's order,
        locked for the claim (rows another claimant holds are skipped)."""
        rows = self._execute(
            sa.select(_m.c.due_at, _m.c.key)
            .where(due)
            .order_by(_m.c.due_at, self._text_order(_m.c.key))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [(due_at, key) for due_at, key in rows]

    def save_message(self, message: Message) -> None:
        """Replace a message's delivery state by key (its content never changes)."""
        values = self._delivery_row(message)
        update = _save_statement(self._conn.dialect, _columns(values))
        if self._driver_row(update, values) is None:
            raise StoreError(f"no message with key {message.key!r} in the outbox")

    @staticmethod
    def _delivery_row(message: Message) -> dict[str, Any]:
        """The values `save_message` writes, and the key it writes them to (last)."""
        values: dict[str, Any] = mapping.delivery_values(message)
        if message.status is not MessageStatus.sending:
            values["lease_until"] = None
        values[_WHERE_KEY] = message.key
        return values

    def save_messages(self, messages: Sequence[Message]) -> None:
        """`save_message` of each, as one executemany per run of messages with the same columns
        (an outcome's UPDATE one at a time cost about 30 us a message more)."""
        rows = (self._delivery_row(message) for message in messages)
        # Consecutive rows of the same columns together, so the saves keep their order.
        for columns, same in itertools.groupby(rows, key=_columns):
            part = list(same)
            update = _save_statement(self._conn.dialect, columns, False)
            if self._driver_many(update, part) != len(part):
                for row in part:
                    if self.get_message(row[_WHERE_KEY]) is None:
                        raise StoreError(f"no message with key {row[_WHERE_KEY]!r} in the outbox")

    def get_message(self, key: str) -> Message | None:
        """One message by key."""
        row = self._execute(sa.select(_m).where(_m.c.key == key)).mappings().first()
        return mapping.message_from_row(row) if row else None

    def messages_for_contact(self, contact_id: str) -> list[Message]:
        """A contact's messages, oldest first (by creation, then key)."""
        stmt = (
            sa.select(_m)
            .where(_m.c.contact_id == contact_id)
            .order_by(_m.c.created_at, self._text_order(_m.c.key))
        )
        return [mapping.message_from_row(row) for row in self._execute(stmt).mappings()]

    def next_message_due_at(self) -> datetime | None:
        """When the earliest pending message is due, or a `sending` lease runs out."""
        (row,) = self._select_rows(_next_message_due(), {})
        times = [t for t in (row["pending"], row["leased"]) if t is not None]
        return min(times, default=None)
