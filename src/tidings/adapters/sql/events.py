"""The event log in SQL: inserts deduplicated by key, claims in `seq` order, history queries."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from tidings.adapters.clock import as_utc
from tidings.adapters.sql import mapping
from tidings.adapters.sql.driver import driver_statement
from tidings.adapters.sql.statements import CHUNK, Queries, chunks, insert_ignoring
from tidings.adapters.sql.tables import UNPROCESSED, UTCDateTime, events
from tidings.model.events import Event
from tidings.ports import EventHead

_e = events
_INSERT = sa.insert(_e).returning(_e.c.seq)
# The columns of a new event row, in the order `mapping.event_values` gives them.
_NEW_ROW = (
    "id",
    "name",
    "contact_id",
    "identifiers",
    "occurred_at",
    "received_at",
    "properties",
    "contact_properties",
    "object",
    "conflicts",
    "source",
    "dedup_key",
    "processed",
)


def _window(
    names: Collection[str] | None, start: datetime | None, end: datetime | None
) -> list[sa.ColumnElement[bool]]:
    """Conditions for a name set and an inclusive time window on `occurred_at`."""
    where: list[sa.ColumnElement[bool]] = []
    if names is not None:
        where.append(_e.c.name.in_(list(names)))
    if start is not None:
        where.append(_e.c.occurred_at >= start)
    if end is not None:
        where.append(_e.c.occurred_at <= end)
    return where


# Read before the decision of every event that triggers a workflow with goals or `wait_for`s:
# built once per set of filters given, with bound values, and read on the driver on SQLite.
@functools.cache
def _contact_events(names: bool, since: bool, until: bool) -> sa.Select[tuple[object, ...]]:
    contact = _e.c.contact_id == sa.bindparam("contact_id", type_=sa.Text())
    where = [contact, *event_filters(names=names, since=since, until=until)]
    return sa.select(_e).where(*where).order_by(_e.c.occurred_at, _e.c.seq)


def event_filters(*, names: bool, since: bool, until: bool) -> list[sa.ColumnElement[bool]]:
    """The filters of a read of contacts' events, each a bound parameter of its name: events
    of some `names` (a list), from `since` and to `until` (times, inclusive)."""
    where: list[sa.ColumnElement[bool]] = []
    if names:
        where.append(_e.c.name.in_(sa.bindparam("names", expanding=True)))
    if since:
        where.append(_e.c.occurred_at >= sa.bindparam("since", type_=UTCDateTime()))
    if until:
        where.append(_e.c.occurred_at <= sa.bindparam("until", type_=UTCDateTime()))
    return where


# Claimed by every engine pass, whatever the events' names: only the columns that tell whether
# a workflow could react to an event (reading and converting whole rows cost more than the rest
# of a pass over events no workflow names). Read on the driver on SQLite, where SQLAlchemy's
# result rows and their chained converters cost more than SQLite's work.
_CLAIM_HEADS = (
    sa.select(_e.c.seq, _e.c.name, _e.c.contact_id)
    .where(UNPROCESSED)
    .order_by(_e.c.seq)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
    .with_for_update(skip_locked=True)
)
# The whole events of the claimed heads the engine applies: one indexed lookup per chunk.
_BY_SEQ = sa.select(_e).where(_e.c.seq.in_(sa.bindparam("seqs", expanding=True))).order_by(_e.c.seq)


# Run after every engine pass, for every event it claimed: built once, and on SQLite run on the
# driver's cursor (SQLAlchemy's building and executing of it cost more than SQLite's update).
_MARK_PROCESSED = (
    sa.update(_e)
    .where(_e.c.seq.in_(sa.bindparam("seqs", expanding=True)))
    .values(processed=True, processed_at=sa.func.now())
)


# Bounded: a dialect is one engine's, and a claim's length is one of a few.
@functools.lru_cache(maxsize=256)
def _mark_processed_sql(dialect: Dialect, count: int) -> str:
    """`_MARK_PROCESSED` for `count` seqs, as SQLAlchemy expands it on a positional dialect
    (SQLite): its parameters are True, then the seqs."""
    compiled = _MARK_PROCESSED.compile(dialect=dialect)
    state = compiled.construct_expanded_state({"seqs": list(range(count))})
    if list(state.positional_parameters) != [True, *range(count)]:  # pragma: no cover
        raise ValueError(f"unexpected parameters for {state.statement!r}")
    sql: str = state.statement
    return sql


# Which of a group's dedup keys are held: one indexed lookup per chunk of keys.
_HELD_KEYS = sa.select(_e.c.dedup_key).where(
    _e.c.dedup_key.in_(sa.bindparam("keys", expanding=True))
)


class EventQueries(Queries):
    """The `EventLog` port over one connection."""

    def add_event(
        self, event: Event, *, dedup_key: str | None = None, processed: bool = False
    ) -> tuple[Event, bool]:
        """Store an event (seq assigned; `processed`: as history, never claimed); with a dedup
        key seen before, return that one, False."""
        values = mapping.event_values(event, dedup_key, processed=processed)
        dialect = self._conn.dialect
        if dedup_key is None:
            insert = driver_statement(dialect, _INSERT, _e, _NEW_ROW)
        else:
            # ON CONFLICT rather than catching IntegrityError: a concurrent insert of the same
            # key waits for the other transaction and then does nothing, and ours stays usable.
            stmt = insert_ignoring(self._postgres, _e, ("dedup_key",), "seq")
            insert = driver_statement(dialect, cast(sa.ClauseElement, stmt), _e, _NEW_ROW)
        inserted = self._driver_row(insert, values)
        seq = None if inserted is None else inserted[0]
        if seq is None:
            row = self._execute(sa.select(_e).where(_e.c.dedup_key == dedup_key)).mappings()
            return mapping.event_from_row(row.one()), False
        stored = {
            "seq": seq,
            "occurred_at": as_utc(event.occurred_at),
            "received_at": as_utc(event.received_at),
        }
        return event.model_copy(update=stored), True

    def held_dedup_keys(self, keys: Collection[str]) -> set[str]:
        """The keys among these that stored events hold (one query per chunk of keys)."""
        held: set[str] = set()
        for part in chunks(sorted(set(keys))):
            rows = self._select_rows(_HELD_KEYS, {"keys": list(part)})
            held.update(row["dedup_key"] for row in rows)
        return held

    def claim_events(self, limit: int) -> list[Event]:
        """Unprocessed events in seq order, locked for this transaction (as `claim_event_heads`)."""
        return self.get_events([head.seq for head in self.claim_event_heads(limit)])

    def claim_event_heads(self, limit: int) -> list[EventHead]:
        """Unprocessed events' heads in seq order, the events locked for this transaction.

        On PostgreSQL, other processes' claims are skipped, and so is any event whose contact
        has an earlier event another process is still holding: per-contact order is kept.
        """
        rows = list(self._select_rows(_CLAIM_HEADS, {"limit": limit}))
        if self._postgres and rows:
            rows = self._without_blocked_contacts(rows)
        return [EventHead(row["seq"], row["name"], row["contact_id"]) for row in rows]

    def get_events(self, seqs: Collection[int]) -> list[Event]:
        """The events with these seqs, in seq order (unknown seqs are left out)."""
        found: list[Event] = []
        for part in chunks(sorted(set(seqs))):
            rows = self._select_rows(_BY_SEQ, {"seqs": list(part)})
            found += [mapping.event_from_row(row) for row in rows]
        return found

    def _without_blocked_contacts(self, rows: list[Mapping[Any, Any]]) -> list[Mapping[Any, Any]]:
        """Drop claimed events that come after an earlier event of theirs held elsewhere."""
        claimed = [row["seq"] for row in rows]
        contact_ids = {row["contact_id"] for row in rows if row["contact_id"] is not None}
        if not contact_ids:
            return rows
        # An unprocessed event below our highest seq that we did not get is locked by another
        # transaction (SKIP LOCKED passed it over): that contact's later events must wait.
        blocked = dict(
            self._execute(
                sa.select(_e.c.contact_id, sa.func.min(_e.c.seq))
                .where(
                    UNPROCESSED,
                    _e.c.contact_id.in_(contact_ids),
                    _e.c.seq < max(claimed),
                    _e.c.seq.not_in(claimed),
                )
                .group_by(_e.c.contact_id)
            ).all()
        )
        return [row for row in rows if row["seq"] < blocked.get(row["contact_id"], row["seq"] + 1)]

    def mark_events_processed(self, seqs: Sequence[int]) -> None:
        """Mark events as applied to the workflows (same transaction as their effects)."""
        for part in chunks(sorted(set(seqs))):
            if self._postgres:
                self._execute(_MARK_PROCESSED, {"seqs": list(part)})
                continue
            # Padded with the last seq to a power of two: a few statements compiled, not one
            # per batch length (each compile costs several times the UPDATE).
            size = min(1 << (len(part) - 1).bit_length(), CHUNK)
            sql = _mark_processed_sql(self._conn.dialect, size)
            parameters = (True, *part, *[part[-1]] * (size - len(part)))
            with self._driver_errors(sql, parameters):
                self._driver_cursor().execute(sql, parameters)

    def contact_events(
        self,
        contact_id: str,
        *,
        names: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Event]:
        """A contact's events by event time (then seq); `since` and `until` are inclusive."""
        stmt = _contact_events(names is not None, since is not None, until is not None)
        values = {"contact_id": contact_id, "names": list(names or ()), "since": since}
        values["until"] = until
        return [mapping.event_from_row(row) for row in self._select_rows(stmt, values)]

    def list_events(
        self,
        *,
        contact_id: str | None = None,
        names: Collection[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Event], int]:
        """A page of events, newest first (event time, then seq), and how many match in all."""
        where: list[Any] = _window(names, start, end)
        if contact_id is not None:
            where.append(_e.c.contact_id == contact_id)
        total = self._execute(sa.select(sa.func.count()).select_from(_e).where(*where))
        page = (
            sa.select(_e)
            .where(*where)
            .order_by(_e.c.occurred_at.desc(), _e.c.seq.desc())
            .limit(limit)
            .offset(offset)
        )
        found = [mapping.event_from_row(row) for row in self._execute(page).mappings()]
        return found, int(total.scalar_one())
