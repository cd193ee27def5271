"""A replay's new events held until the chunk's end and written in one statement, on a fresh
store that numbers events predictably (`EventNumbering`).

Writing each event through costs an INSERT ... RETURNING seq per event, most of a replay's
ingestion. When the store held no event when the replay began and the replay is its only
writer (`ReplayCache(fresh=True)`), every dedup key in the log went through here, so whether a
key is new is known without asking; and when the store says which seq its next event gets and
that it numbers one by one from there (SQLite's rowid, the memory store's position), each held
event can be given the seq it would have had. Anything that reads the log, or writes an event
through, first writes what is held, so it sees the log the store would have had all along.
"""

from __future__ import annotations

from datetime import UTC
from typing import cast

from tidings.model.events import Event
from tidings.ports import EventNumbering, NumberedEvent, UnitOfWork


class EventsBehind:
    """The held events of one replay, and the numbering and dedup keys they continue."""

    def __init__(self, *, fresh: bool) -> None:
        # None: not asked yet. Asked once: the replay is the only writer, so the numbering the
        # store announced at its first event stays the replay's own.
        self.next_seq: int | None = None
        self.refused = not fresh  # write-through only: keys in the store are not all known here
        self.keys: set[str] = set()  # every dedup key this replay stored (written or held)
        self.held: list[NumberedEvent] = []
        self._checked: UnitOfWork | None = None  # the last unit of work found to number events

    def add_event(
        self, uow: UnitOfWork, event: Event, dedup_key: str | None, processed: bool
    ) -> tuple[Event, bool]:
        """`uow.add_event`'s answer, the event held when it is new and can be numbered here."""
        numbering = self._numbering(uow)
        naive = event.occurred_at.utcoffset() is None or event.received_at.utcoffset() is None
        seen = dedup_key is not None and dedup_key in self.keys
        if numbering is None or naive or seen:
            # Through the store, as without this: a duplicate gets the stored event back, a
            # naive time the store's own error. Held events go first, so seqs stay in order.
            self.flush(uow)
            stored, is_new = uow.add_event(event, dedup_key=dedup_key, processed=processed)
            if is_new and numbering is not None:
                # Numbering goes on after it; its key is one more this replay knows is held.
                self.next_seq = (stored.seq or 0) + 1
                if dedup_key is not None:
                    self.keys.add(dedup_key)
            return stored, is_new
        assert self.next_seq is not None  # set by `_numbering`
        # As the SQL store returns a new event: its seq, its times in UTC.
        times = {"occurred_at": event.occurred_at.astimezone(UTC)}
        times["received_at"] = event.received_at.astimezone(UTC)
        stored = event.model_copy(update={"seq": self.next_seq, **times})
        self.next_seq += 1
        self.held.append(NumberedEvent(stored, dedup_key, processed))
        if dedup_key is not None:
            self.keys.add(dedup_key)
        return stored, True

    def flush(self, uow: UnitOfWork) -> None:
        """Write the held events (one call), before anything reads the log."""
        if self.held:
            numbering = self._numbering(uow)
            assert numbering is not None  # events are only held through the port
            numbering.add_numbered_events(self.held)
            self.held = []

    def _numbering(self, uow: UnitOfWork) -> EventNumbering | None:
        """The store's numbering port, when it may be used (asked once, at the first event)."""
        if self.refused:
            return None
        if uow is self._checked:  # asked at every event: the methods are the transaction's
            return cast(EventNumbering, uow)
        add_many = getattr(uow, "add_numbered_events", None)
        next_seq = getattr(uow, "next_event_seq", None)
        if not callable(add_many) or not callable(next_seq):
            self.refused = True
            return None
        if self.next_seq is None:
            self.next_seq = next_seq()
            if self.next_seq is None:
                self.refused = True
                return None
        self._checked = uow
        return cast(EventNumbering, uow)
