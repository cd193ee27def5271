"""The in-memory store's event log: events numbered by position, deduplicated by key, claimed
in order of receipt and read back per contact by event time (the SQL `EventQueries`' twin)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from tidings.adapters import memory_records as records
from tidings.errors import StoreError
from tidings.model.events import Event
from tidings.ports import EventHead, NumberedEvent


class MemoryEventLog:
    """The `EventLog` part of the memory unit of work (its state and journal set by it)."""

    _s: records.State
    _j: records.Journal

    def add_event(
        self, event: Event, *, dedup_key: str | None = None, processed: bool = False
    ) -> tuple[Event, bool]:
        """Store an event (seq assigned; `processed`: as history, never claimed); with a dedup
        key seen before, return that one, False."""
        if dedup_key is not None and dedup_key in self._s.dedup:
            return records.out(self._s.events[self._s.dedup[dedup_key] - 1]), False
        seq = len(self._s.events) + 1
        stored = records.stored(event.model_copy(update={"seq": seq}))
        self._j.append(self._s.events, stored)
        if dedup_key is not None:
            self._j.put(self._s.dedup, dedup_key, seq)
        if stored.contact_id is not None:
            if stored.contact_id not in self._s.events_by_contact:
                self._j.put(self._s.events_by_contact, stored.contact_id, [])
            self._j.append(self._s.events_by_contact[stored.contact_id], seq)
        if processed:
            self.mark_events_processed([seq])
        return records.out(stored), True

    def next_event_seq(self) -> int | None:
        """Seqs are positions in the log: the next is always its length plus one."""
        return len(self._s.events) + 1

    def add_numbered_events(self, events: Sequence[NumberedEvent]) -> None:
        """`add_event` for each, once every seq and dedup key is checked (nothing stored
        otherwise, as a refused SQL insert)."""
        keys = [n.dedup_key for n in events if n.dedup_key is not None]
        held = [key for key in keys if key in self._s.dedup]
        if held or len(set(keys)) < len(keys):
            raise StoreError(f"events: dedup key already held: {(held or keys)[0]!r}")
        for offset, numbered in enumerate(events, start=len(self._s.events) + 1):
            if numbered.event.seq != offset:
                raise StoreError(f"events: seq {numbered.event.seq} is not the next ({offset})")
        for n in events:
            self.add_event(n.event, dedup_key=n.dedup_key, processed=n.processed)

    def held_dedup_keys(self, keys: Collection[str]) -> set[str]:
        """The keys among these that stored events hold."""
        return {key for key in keys if key in self._s.dedup}

    def claim_events(self, limit: int) -> list[Event]:
        """Unprocessed events in seq order (transactions are serialised, so no lock is needed)."""
        claimed: list[Event] = []
        seq = self._s.marks["low_water"]
        while seq <= len(self._s.events) and len(claimed) < limit:
            if seq not in self._s.processed:
                claimed.append(records.out(self._s.events[seq - 1]))
            seq += 1
        return claimed

    def claim_event_heads(self, limit: int) -> list[EventHead]:
        """`claim_events`, each event's head only."""
        return [EventHead(e.seq or 0, e.name, e.contact_id) for e in self.claim_events(limit)]

    def get_events(self, seqs: Collection[int]) -> list[Event]:
        """The events with these seqs, in seq order (unknown seqs are left out)."""
        known = range(1, len(self._s.events) + 1)
        return [records.out(self._s.events[seq - 1]) for seq in sorted(set(seqs)) if seq in known]

    def mark_events_processed(self, seqs: Sequence[int]) -> None:
        """Mark events as applied to the workflows."""
        for seq in seqs:
            if 1 <= seq <= len(self._s.events):
                self._j.add(self._s.processed, seq)
        low = self._s.marks["low_water"]
        while low in self._s.processed:
            low += 1
        self._j.put(self._s.marks, "low_water", low)

    def contact_events(
        self,
        contact_id: str,
        *,
        names: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Event]:
        """A contact's events by event time (then seq); `since` and `until` are inclusive."""
        seqs = self._s.events_by_contact.get(contact_id, [])
        events = [self._s.events[seq - 1] for seq in seqs]
        chosen = _filter_events(events, names, since, until)
        return [records.out(e) for e in sorted(chosen, key=lambda e: (e.occurred_at, e.seq or 0))]

    def contact_events_many(
        self,
        contact_ids: Collection[str],
        *,
        names: Collection[str] | None = None,
        since: datetime | None = None,
    ) -> list[Event]:
        """`contact_events` of each of these contacts, in one list by event time (then seq)."""
        found = [
            event
            for contact_id in set(contact_ids)
            for event in self.contact_events(contact_id, names=names, since=since)
        ]
        return sorted(found, key=lambda e: (e.occurred_at, e.seq or 0))

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
        events = self._s.events
        if contact_id is not None:
            events = [
                self._s.events[seq - 1] for seq in self._s.events_by_contact.get(contact_id, [])
            ]
        chosen = _filter_events(events, names, start, end)
        chosen.sort(key=lambda e: (e.occurred_at, e.seq or 0), reverse=True)
        return [records.out(e) for e in chosen[offset : offset + limit]], len(chosen)


def _filter_events(
    events: Sequence[Event],
    names: Collection[str] | None,
    start: datetime | None,
    end: datetime | None,
) -> list[Event]:
    """Events matching a name set and an inclusive time window."""
    wanted = set(names) if names is not None else None
    low = records.utc(start) if start is not None else None
    high = records.utc(end) if end is not None else None
    return [
        e
        for e in events
        if (wanted is None or e.name in wanted)
        and (low is None or e.occurred_at >= low)
        and (high is None or e.occurred_at <= high)
    ]
