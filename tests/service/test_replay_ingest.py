"""A replay's ingestion stores what `IngestService` stores for a request of one keyed event.

Given events that make new contacts, update them (identifiers, `contact_properties`), carry
identifiers that belong to someone else, repeat an id, or name a contact id that does not
exist, when each is stored by `ReplayIngest` into one store and as a one-event request keyed by
its id through `IngestService` into another, then both answer the same and hold the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from tidings.adapters.clock import ManualClock
from tidings.adapters.memory import MemoryStore
from tidings.errors import EventError
from tidings.model.events import Event, IdentifierKind
from tidings.ports import UnitOfWork
from tidings.service.ingest import IngestService
from tidings.service.replay_cache import ReplayCache
from tidings.service.replay_ingest import ReplayIngest

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)
E, X, C = IdentifierKind.email_id, IdentifierKind.ext_id, IdentifierKind.contact_id


def make_event(n: int, ids: dict[IdentifierKind, str], **attributes: str | int) -> Event:
    at = T0 + timedelta(minutes=n)
    return Event(
        id=f"e{n}",
        name="visited",
        identifiers=ids,
        occurred_at=at,
        received_at=at,
        properties={"n": n},
        contact_properties=attributes,
        source="simulate",
    )


EVENTS = [
    make_event(1, {X: "7"}),  # a new contact
    make_event(2, {X: "7", E: "a@example.com"}, FIRSTNAME="Ann"),  # gains an email, a name
    make_event(3, {X: "7"}),  # nothing changes
    make_event(4, {X: "8", E: "b@example.com"}),  # another new contact
    make_event(5, {X: "7", E: "b@example.com"}),  # the email belongs to the other: a conflict
    make_event(6, {X: "7", E: "c@example.com"}),  # a second email for 7: a conflict too
    make_event(7, {E: "b@example.com"}, FIRSTNAME="Bo"),
    make_event(8, {C: "1", X: "7"}, FIRSTNAME="Al"),  # by contact id
    make_event(9, {C: "99", X: "9"}),  # no such contact: refused
    make_event(10, {X: "9"}, FIRSTNAME=1),
    # A repeated id, last so nothing later hides what it did: a duplicate changes nothing,
    # not the contact, and traces no conflict.
    make_event(2, {X: "7", E: "b@example.com"}, FIRSTNAME="Late"),
]


@contextmanager
def joined(uow: UnitOfWork) -> Iterator[UnitOfWork]:
    yield uow


class _Joined:
    def __init__(self, uow: UnitOfWork) -> None:
        self.transaction = lambda: joined(uow)


def counter() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield str(n)


def outcome(store: Callable[[], Event | None]) -> object:
    try:
        return store()
    except EventError as exc:
        return f"refused: {exc}"


@pytest.mark.parametrize("cached", [False, True])
@pytest.mark.parametrize("history", [False, True])
def test_the_replay_ingests_each_event_as_a_request_of_one_keyed_event(
    cached: bool, history: bool
) -> None:
    stores = MemoryStore(), MemoryStore()
    ids = counter(), counter()
    caches = ReplayCache(fresh=True), ReplayCache(fresh=True)
    answers: tuple[list[object], list[object]] = [], []
    with stores[0].transaction() as raw_a, stores[1].transaction() as raw_b:
        uow_a = caches[0].bind(raw_a) if cached else raw_a
        uow_b = caches[1].bind(raw_b) if cached else raw_b
        replay = ReplayIngest(uow_a, lambda: next(ids[0]), key_id="simulate")
        service = IngestService(
            _Joined(uow_b),  # type: ignore[arg-type]  # a Store whose transaction is uow_b
            ManualClock(T0),
            new_contact_id=lambda: next(ids[1]),
        )
        for event in EVENTS:
            answers[0].append(outcome(lambda e=event: replay.store(e, history=history)))

            def through_service(e: Event = event) -> Event | None:
                submission = service.submission(
                    [e], key_id="simulate", body=b"", idempotency_key=e.id, history=history
                )
                done = service.ingest_now(submission)
                return done.events[0] if done.stored else None

            answers[1].append(outcome(through_service))
        if cached:
            uow_a.flush()  # type: ignore[union-attr]
            uow_b.flush()  # type: ignore[union-attr]
    assert answers[0] == answers[1]
    assert sum(a is None for a in answers[0]) == 1  # the repeated id
    assert [a for a in answers[0] if isinstance(a, str)] == [
        "refused: identifiers.contact_id: no contact with id 99"
    ]
    assert stores[0]._state == stores[1]._state
    assert len(stores[0]._state.trace) == 2  # the two conflicts
