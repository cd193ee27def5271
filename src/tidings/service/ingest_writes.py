"""The new events of one ingest transaction, held and written in one statement at its end.

`add_event` costs an INSERT ... RETURNING seq per event, the largest part of storing a batch.
On a store that numbers events predictably (`EventNumbering`: SQLite's rowid, the memory
store's position) and says which dedup keys it holds (`HeldDedupKeys`), the transaction asks
once which of its events' keys are held, gives each new event the seq the store would have
given it, and writes them all together before anything reads the log and before the commit.
Such stores serialise their write transactions, so no other writer can take a key or a seq
meanwhile: each event gets the answer `add_event` would have given it. Elsewhere (PostgreSQL:
a sequence, and concurrent writers), and in a transaction of one event (an import, a quiet
daemon), every event is written through `add_event` as it comes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import cast

from tidings.model.events import Event, IdentifierKind
from tidings.ports import EventNumbering, HeldDedupKeys, NumberedEvent, UnitOfWork


class _NumberingStore(EventNumbering, HeldDedupKeys):
    """The two optional ports held events need."""


def _numbering(uow: UnitOfWork) -> _NumberingStore | None:
    """The unit of work as a store that numbers events predictably, if it is one."""
    needed = ("next_event_seq", "add_numbered_events", "held_dedup_keys")
    if not all(callable(getattr(uow, name, None)) for name in needed):
        return None
    return cast(_NumberingStore, uow)


class IngestWrites:
    """One transaction's new events: held and numbered here when the store allows it, else
    written through one by one; `flush` writes what is held."""

    def __init__(self, uow: UnitOfWork, dedup_keys: Sequence[str | None]) -> None:
        self._uow = uow
        self._held: list[NumberedEvent] = []
        # One event gains nothing by being held: it would cost two reads more than its insert.
        self._numbering = _numbering(uow) if len(dedup_keys) > 1 else None
        # The seq the next new event gets, and every key held in the log or by this
        # transaction; None: events are written through.
        self._next_seq = self._numbering.next_event_seq() if self._numbering else None
        self._keys: set[str] = set()
        if self._numbering is not None and self._next_seq is not None:
            self._keys = self._numbering.held_dedup_keys({k for k in dedup_keys if k is not None})

    def add(
        self,
        event: Event,
        *,
        contact_id: str,
        conflicts: Mapping[IdentifierKind, str],
        dedup_key: str | None,
        processed: bool,
    ) -> Event | None:
        """The event as stored on its contact, or None when its dedup key was stored before."""
        record = {"contact_id": contact_id, "conflicts": conflicts}
        naive = event.occurred_at.utcoffset() is None or event.received_at.utcoffset() is None
        if self._next_seq is None or naive:
            # Through the store: a naive time gets the store's own error. Held events first,
            # so seqs stay in order.
            self.flush()
            stored, is_new = self._uow.add_event(
                event.model_copy(update=record), dedup_key=dedup_key, processed=processed
            )
            if is_new and self._next_seq is not None:
                self._next_seq = (stored.seq or 0) + 1
                if dedup_key is not None:
                    self._keys.add(dedup_key)
            return stored if is_new else None
        if dedup_key is not None:
            if dedup_key in self._keys:
                return None
            self._keys.add(dedup_key)
        # As the store returns a new event: its seq, its times in UTC.
        stored = event.model_copy(
            update=record
            | {
                "seq": self._next_seq,
                "occurred_at": event.occurred_at.astimezone(UTC),
                "received_at": event.received_at.astimezone(UTC),
            }
        )
        self._next_seq += 1
        self._held.append(NumberedEvent(stored, dedup_key, processed))
        return stored

    def flush(self) -> None:
        """Write the held events (one call): before the log is read, and before the commit."""
        if self._held:
            assert self._numbering is not None  # events are held only through it
            self._numbering.add_numbered_events(self._held)
            self._held = []
