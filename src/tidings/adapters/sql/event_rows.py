"""Events inserted in bulk with the seqs they carry (`EventNumbering`): a replay into a fresh
store writes a chunk's events in one executemany instead of one INSERT ... RETURNING each."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from tidings.adapters.sql import mapping
from tidings.adapters.sql.statements import Queries
from tidings.adapters.sql.tables import events
from tidings.ports import NumberedEvent

_e = events
# After seqs given by hand, PostgreSQL's sequence must move past them or the next `add_event`
# would take one of them. Never moved back: a concurrent insert may hold a higher number.
_SEQUENCE_PAST = sa.text(
    "SELECT setval(pg_get_serial_sequence('events', 'seq'),"
    " GREATEST(:top, nextval(pg_get_serial_sequence('events', 'seq'))))"
)


# Asked by every ingest transaction that holds its events: built once, read on the driver.
_TOP_SEQ = sa.select(sa.func.max(_e.c.seq).label("top"))


class EventRowQueries(Queries):
    """The `EventNumbering` port over one connection."""

    def next_event_seq(self) -> int | None:
        """On SQLite the seq is the rowid: a new row takes the highest one plus one, and an
        insert ignored as a duplicate takes none. PostgreSQL's sequence cannot say."""
        if self._postgres:
            return None
        [row] = self._select_rows(_TOP_SEQ, {})
        top: int | None = row["top"]
        return (top or 0) + 1

    def add_numbered_events(self, events: Sequence[NumberedEvent]) -> None:
        """Insert events with their seqs (one executemany); a seq or dedup key in use raises."""
        if not events:
            return
        rows = []
        for numbered in events:
            values = mapping.event_values(
                numbered.event, numbered.dedup_key, processed=numbered.processed
            )
            values["seq"] = numbered.event.seq
            rows.append(values)
        self._insert_many(_e, rows)
        if self._postgres:
            top = max(numbered.event.seq or 0 for numbered in events)
            self._execute(_SEQUENCE_PAST, {"top": top})
