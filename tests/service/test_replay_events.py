"""A fresh replay holds its new events and writes them at the chunk's end with the seqs the
store would have given them: the same answers, the same log, on every store kind."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from engine.factories import make_event
from tidings.adapters.memory import MemoryStore
from tidings.adapters.sql.store import SqlStore
from tidings.model.events import Event
from tidings.ports import NumberedEvent, Store, UnitOfWork
from tidings.service.replay_cache import ReplayCache

# Two chunks: a duplicate of an event held in the same chunk, of one written in the chunk
# before, an event with no dedup key, and one stored as history.
CHUNKS: list[list[tuple[Event, str | None, bool]]] = [
    [
        (make_event("viewed", id="e1"), "row-1", False),
        (make_event("viewed", id="e2"), "row-2", True),
        (make_event("viewed", id="e1-again"), "row-1", False),
        (make_event("viewed", id="e3"), None, False),
    ],
    [
        (make_event("viewed", id="e2-again"), "row-2", False),
        (make_event("viewed", id="e4"), "row-4", False),
    ],
]


class CountingWrites:
    """A unit of work that counts the event writes it passes on to the real one."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.one_by_one = 0
        self.numbered_calls = 0

    def add_event(self, event: Event, **kwargs: Any) -> tuple[Event, bool]:
        self.one_by_one += 1
        return self.uow.add_event(event, **kwargs)

    def add_numbered_events(self, events: Sequence[NumberedEvent]) -> None:
        self.numbered_calls += 1
        self.uow.add_numbered_events(events)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.uow, name)


def replay(store: Store, cache: ReplayCache | None) -> tuple[list[tuple[Event, bool]], int, int]:
    """Every chunk in a transaction; the answers, and the writes one by one and in bulk."""
    answers: list[tuple[Event, bool]] = []
    one_by_one = numbered_calls = 0
    for chunk in CHUNKS:
        with store.transaction() as uow:
            counted = CountingWrites(uow)
            target = counted if cache is None else cache.bind(counted)  # type: ignore[arg-type]
            for event, key, processed in chunk:
                answers.append(target.add_event(event, dedup_key=key, processed=processed))
            if cache is not None:
                target.flush()  # type: ignore[union-attr]
        one_by_one += counted.one_by_one
        numbered_calls += counted.numbered_calls
    return answers, one_by_one, numbered_calls


def log(store: Store) -> list[Event]:
    with store.transaction() as uow:
        return [*uow.claim_events(100), *uow.contact_events("c1")]


def is_postgres(store: Store) -> bool:
    return isinstance(store, SqlStore) and store.dialect == "postgresql"


@pytest.fixture
def twin(store: Store, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Another empty store of the same kind as `store`."""
    if not isinstance(store, SqlStore):
        yield MemoryStore()
        return
    if is_postgres(store):
        url = request.getfixturevalue("empty_postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'twin.db'}"
    other = SqlStore(url)
    other.migrate()
    yield other
    other.close()


def test_a_fresh_replay_stores_the_log_the_store_would_have_numbered(
    store: Store, twin: Store
) -> None:
    expected, _, _ = replay(twin, None)  # written through, one event at a time
    answers, _, _ = replay(store, ReplayCache(fresh=True))
    assert answers == expected
    assert [e.id for e, _ in answers] == ["e1", "e2", "e1", "e3", "e2", "e4"]
    if not is_postgres(store):  # PostgreSQL's sequence is used up by the duplicates
        assert [e.seq for e, _ in answers] == [1, 2, 1, 3, 2, 4]
    assert log(store) == log(twin)


def test_a_fresh_replay_writes_a_chunks_new_events_in_one_call(store: Store) -> None:
    _, one_by_one, numbered_calls = replay(store, ReplayCache(fresh=True))
    if is_postgres(store):
        # Its sequence cannot say which seq comes next: every event is written through.
        assert (one_by_one, numbered_calls) == (6, 0)
    else:
        # Only the duplicates go to the store one by one (for the stored event).
        assert (one_by_one, numbered_calls) == (2, 3)


def test_a_replay_into_a_store_that_held_events_writes_them_through(store: Store) -> None:
    _, one_by_one, numbered_calls = replay(store, ReplayCache(fresh=False))
    assert (one_by_one, numbered_calls) == (6, 0)


def test_reads_of_the_log_see_the_events_held(store: Store) -> None:
    cache = ReplayCache(fresh=True)
    with store.transaction() as uow:
        cached = cache.bind(uow)
        first, _ = cached.add_event(make_event("viewed", id="e1"), dedup_key="row-1")
        second, _ = cached.add_event(make_event("viewed", id="e2"), dedup_key="row-2")
        assert cached.list_events() == ([second, first], 2)
        assert cached.claim_events(10) == [first, second]
        third, _ = cached.add_event(make_event("viewed", id="e3"), dedup_key="row-3")
        cached.mark_events_processed([third.seq or 0])
        assert cached.claim_events(10) == [first, second]
        fourth, _ = cached.add_event(make_event("viewed", id="e4"), dedup_key="row-4")
        assert [h.seq for h in cached.claim_event_heads(10)] == [first.seq, second.seq, fourth.seq]
        fifth, _ = cached.add_event(make_event("viewed", id="e5"), dedup_key="row-5")
        assert cached.get_events([fifth.seq or 0, first.seq or 0]) == [first, fifth]
        cached.flush()
    assert log(store)[:2] == [first, second]
