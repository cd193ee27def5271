"""The replay cache answers as the store would, over every store kind, including the answers it
gives without asking the store (a contact's history on a store that was empty)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from engine.factories import T0, make_contact, make_event
from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.ports import Store, UnitOfWork
from tidings.service.replay_cache import CachedUnitOfWork, ReplayCache


class CountingReads:
    """A unit of work that counts the history reads it passes on to the real one."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.history_reads = 0

    def contact_events(
        self,
        contact_id: str,
        *,
        names: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Event]:
        self.history_reads += 1
        return self.uow.contact_events(contact_id, names=names, since=since, until=until)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.uow, name)


def contact(contact_id: str) -> Contact:
    return make_contact(
        id=contact_id, identifiers={IdentifierKind.email_id: f"{contact_id}@example.com"}
    )


def event(contact_id: str, name: str, minutes: int) -> Event:
    at = T0 + timedelta(minutes=minutes)
    return make_event(name, at, id=f"{contact_id}-{name}-{minutes}").model_copy(
        update={
            "contact_id": contact_id,
            "identifiers": {IdentifierKind.email_id: f"{contact_id}@example.com"},
        }
    )


def create(cached: CachedUnitOfWork, contact_id: str) -> None:
    """Create a contact as ingestion does: looked up (absent), then saved."""
    assert cached.get_contact(contact_id) is None
    cached.save_contact(contact(contact_id))


def bound(cache: ReplayCache, uow: UnitOfWork) -> tuple[CachedUnitOfWork, CountingReads]:
    reads = CountingReads(uow)
    return cache.bind(reads), reads  # type: ignore[arg-type]


def stored_history(store: Store, contact_id: str, **filters: Any) -> list[Event]:
    with store.transaction() as uow:
        return uow.contact_events(contact_id, **filters)


def test_a_contact_new_to_an_empty_store_has_its_history_without_a_read(store: Store) -> None:
    cache = ReplayCache(fresh=True)
    with store.transaction() as uow:
        cached, reads = bound(cache, uow)
        create(cached, "c1")
        for name, minutes in [("viewed", 10), ("carted", 5), ("viewed", 5), ("viewed", 20)]:
            cached.add_event(event("c1", name, minutes))
        create(cached, "c2")  # no event: an empty history, known without asking either
        answers = [
            cached.contact_events("c1"),
            cached.contact_events("c1", names={"viewed"}),
            cached.contact_events("c1", since=T0 + timedelta(minutes=10)),
            cached.contact_events("c1", until=T0 + timedelta(minutes=5)),
            cached.contact_events("c2"),
        ]
        cached.flush()

    assert reads.history_reads == 0
    assert answers == [
        stored_history(store, "c1"),
        stored_history(store, "c1", names={"viewed"}),
        stored_history(store, "c1", since=T0 + timedelta(minutes=10)),
        stored_history(store, "c1", until=T0 + timedelta(minutes=5)),
        [],
    ]
    assert [e.id for e in answers[0]][:2] == ["c1-carted-5", "c1-viewed-5"]  # same time: by seq


def test_a_contact_dropped_by_the_trim_and_seen_again_keeps_its_whole_history(
    store: Store,
) -> None:
    cache = ReplayCache(fresh=True, max_contacts=1)
    with store.transaction() as uow:
        cached, _ = bound(cache, uow)
        create(cached, "c1")
        cached.add_event(event("c1", "viewed", 1))
        cached.add_event(event("c1", "viewed", 2))
        create(cached, "c2")
        cached.add_event(event("c2", "viewed", 3))
        cached.flush()  # keeps c2 only
    assert "c1" not in cache.entries

    with store.transaction() as uow:
        cached, reads = bound(cache, uow)
        cached.add_event(event("c1", "viewed", 4))
        seen = cached.contact_events("c1")
        cached.flush()

    assert reads.history_reads == 1  # the trim forgot it: read again, not taken as empty
    assert [e.id for e in seen] == ["c1-viewed-1", "c1-viewed-2", "c1-viewed-4"]
    assert seen == stored_history(store, "c1")


def test_a_replay_into_a_store_with_contacts_sees_their_earlier_history(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_contact(contact("c1"))
        uow.add_event(event("c1", "viewed", 1))
    cache = ReplayCache(fresh=False)

    with store.transaction() as uow:
        cached, reads = bound(cache, uow)
        found = cached.find_contacts({IdentifierKind.email_id: "c1@example.com"})
        cached.add_event(event("c1", "viewed", 2))
        seen = cached.contact_events("c1")
        again = cached.contact_events("c1")
        cached.flush()

    assert [c.id for c in found] == ["c1"]
    assert reads.history_reads == 1  # read once, then kept up to date
    assert [e.id for e in seen] == ["c1-viewed-1", "c1-viewed-2"]
    assert seen == again == stored_history(store, "c1")


def test_a_contact_created_in_a_store_with_history_reads_what_the_store_holds(
    store: Store,
) -> None:
    # Not empty at the start: events may name a contact id the store has no contact row for
    # (yet), so even a contact created by the replay has its history read once.
    with store.transaction() as uow:
        uow.add_event(event("c1", "viewed", 1))
    cache = ReplayCache(fresh=False)

    with store.transaction() as uow:
        cached, reads = bound(cache, uow)
        create(cached, "c1")
        cached.add_event(event("c1", "viewed", 2))
        seen = cached.contact_events("c1")
        cached.flush()

    assert reads.history_reads == 1
    assert [e.id for e in seen] == ["c1-viewed-1", "c1-viewed-2"]
