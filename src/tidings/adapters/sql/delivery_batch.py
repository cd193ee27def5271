"""Messages, runs and events read by key in bulk (`DeliveryBatch`): one query per chunk of keys."""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa

from tidings.adapters.sql import mapping
from tidings.adapters.sql.events import event_filters
from tidings.adapters.sql.statements import Queries, chunks
from tidings.adapters.sql.tables import events, messages, runs
from tidings.model.events import Event
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Run

_e = events
_m = messages
_r = runs


# Built once per dialect with an expanding parameter: the worker reads a batch of messages and
# their runs every round, and building these costs more than running them.
@functools.cache
def _messages_by_key(postgres: bool) -> sa.Select[tuple[object, ...]]:
    key = _m.c.key.collate("C") if postgres else _m.c.key
    return sa.select(_m).where(_m.c.key.in_(sa.bindparam("keys", expanding=True))).order_by(key)


@functools.cache
def _message_states(postgres: bool) -> sa.Select[tuple[object, ...]]:
    key = _m.c.key.collate("C") if postgres else _m.c.key
    chosen = sa.select(_m.c.key, _m.c.status, _m.c.attempts)
    return chosen.where(_m.c.key.in_(sa.bindparam("keys", expanding=True))).order_by(key)


@functools.cache
def _runs_by_id(postgres: bool) -> sa.Select[tuple[object, ...]]:
    run_id = _r.c.id.collate("C") if postgres else _r.c.id
    return sa.select(_r).where(_r.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(run_id)


@functools.cache
def _contact_events(by_name: bool, since: bool) -> sa.Select[tuple[object, ...]]:
    """The events of contacts (`ids`), filtered as `contact_events` filters: read at every
    recall check, a few contacts at a time."""
    contacts = _e.c.contact_id.in_(sa.bindparam("ids", expanding=True))
    return sa.select(_e).where(contacts, *event_filters(names=by_name, since=since, until=False))


class DeliveryBatchQueries(Queries):
    """The `DeliveryBatch` port over one connection."""

    def get_messages(self, keys: Collection[str]) -> list[Message]:
        """The messages with these keys, by key (unknown keys are left out)."""
        found: list[Message] = []
        for part in chunks(sorted(set(keys))):
            rows = self._select_rows(_messages_by_key(self._postgres), {"keys": list(part)})
            found += [mapping.message_from_row(row) for row in rows]
        return found

    def message_states(self, keys: Collection[str]) -> dict[str, tuple[MessageStatus, int]]:
        """The (status, attempts) of the messages with these keys (unknown keys are left out)."""
        found: dict[str, tuple[MessageStatus, int]] = {}
        for part in chunks(sorted(set(keys))):
            for row in self._select_rows(_message_states(self._postgres), {"keys": list(part)}):
                found[row["key"]] = (MessageStatus(row["status"]), row["attempts"])
        return found

    def get_runs(self, ids: Collection[str]) -> list[Run]:
        """The runs with these ids, by id (unknown ids are left out)."""
        found: list[Run] = []
        for part in chunks(sorted(set(ids))):
            rows = self._select_rows(_runs_by_id(self._postgres), {"ids": list(part)})
            found += [mapping.run_from_row(row) for row in rows]
        return found

    def contact_events_many(
        self,
        contact_ids: Collection[str],
        *,
        names: Collection[str] | None = None,
        since: datetime | None = None,
    ) -> list[Event]:
        """`contact_events` of each of these contacts, in one list by event time (then seq)."""
        statement = _contact_events(names is not None, since is not None)
        values: dict[str, object] = {}
        if names is not None:
            values["names"] = sorted(set(names))
        if since is not None:
            values["since"] = since
        found: list[Event] = []
        for part in chunks(sorted(set(contact_ids))):
            rows = self._select_rows(statement, values | {"ids": list(part)})
            found += [mapping.event_from_row(row) for row in rows]
        return sorted(found, key=lambda e: (e.occurred_at, e.seq or 0))
