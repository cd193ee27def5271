"""The store contract for events written with their seqs (`EventNumbering`), on the memory
store, SQLite and PostgreSQL alike: stored and read back as `add_event` would have stored them,
and the log numbers on after them."""

from __future__ import annotations

from typing import cast

import pytest

from support.records import make_event
from tidings.adapters.sql.store import SqlStore
from tidings.errors import StoreError
from tidings.model.events import Event
from tidings.ports import EventNumbering, HeldDedupKeys, NumberedEvent, Store, UnitOfWork


def numbering(uow: UnitOfWork) -> EventNumbering:
    """The unit of work's numbering methods (every store offers them)."""
    return cast(EventNumbering, uow)


def numbered(n: int, seq: int) -> Event:
    return make_event(n).model_copy(update={"seq": seq})


def knows_its_numbering(store: Store) -> bool:
    """PostgreSQL's sequence cannot say which seq comes next; the other stores can."""
    return not (isinstance(store, SqlStore) and store.dialect == "postgresql")


def test_the_next_seq_is_known_where_the_store_numbers_one_by_one(store: Store) -> None:
    with store.transaction() as uow:
        empty = numbering(uow).next_event_seq()
        uow.add_event(make_event(1))
        uow.add_event(make_event(2), dedup_key="k")
        uow.add_event(make_event(3), dedup_key="k")  # a duplicate uses no number
        after = numbering(uow).next_event_seq()
        third, _ = uow.add_event(make_event(4))
    if knows_its_numbering(store):
        assert (empty, after, third.seq) == (1, 3, 3)
    else:
        assert (empty, after) == (None, None)


def test_numbered_events_read_back_as_added_ones_and_the_log_numbers_on_after_them(
    store: Store,
) -> None:
    with store.transaction() as uow:
        numbering(uow).add_numbered_events(
            [NumberedEvent(numbered(1, 1)), NumberedEvent(numbered(2, 2), dedup_key="k2")]
        )
        numbering(uow).add_numbered_events([])
        third, created = uow.add_event(make_event(3))
    assert created and third.seq == 3
    with store.transaction() as uow:
        assert uow.claim_events(10) == [numbered(1, 1), numbered(2, 2), third]
        assert uow.contact_events("contact-2") == [numbered(2, 2)]
        assert uow.list_events()[1] == 3
        if knows_its_numbering(store):
            assert numbering(uow).next_event_seq() == 4


def test_a_numbered_events_dedup_key_makes_a_later_add_a_duplicate(store: Store) -> None:
    with store.transaction() as uow:
        numbering(uow).add_numbered_events([NumberedEvent(numbered(1, 1), dedup_key="row-1")])
    with store.transaction() as uow:
        again, created = uow.add_event(make_event(2), dedup_key="row-1")
    assert not created and again == numbered(1, 1)


def test_numbered_events_stored_as_processed_are_history_never_claimed(store: Store) -> None:
    with store.transaction() as uow:
        numbering(uow).add_numbered_events(
            [NumberedEvent(numbered(1, 1), processed=True), NumberedEvent(numbered(2, 2))]
        )
    with store.transaction() as uow:
        assert uow.claim_events(10) == [numbered(2, 2)]
        assert uow.contact_events("contact-1") == [numbered(1, 1)]


@pytest.mark.parametrize(
    ("seq", "key"),
    [(1, "new"), (2, "held")],
    ids=["seq in use", "dedup key held"],
)
def test_a_seq_or_dedup_key_in_use_refuses_the_call_and_stores_nothing(
    store: Store, seq: int, key: str
) -> None:
    with store.transaction() as uow:
        uow.add_event(make_event(1), dedup_key="held")
    with pytest.raises(StoreError), store.transaction() as uow:
        numbering(uow).add_numbered_events(
            [NumberedEvent(numbered(2, seq), dedup_key=key), NumberedEvent(numbered(3, 3))]
        )
    with store.transaction() as uow:
        assert [e.id for e in uow.list_events()[0]] == ["event-1"]


def test_held_dedup_keys_are_those_stored_events_hold(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_event(make_event(1), dedup_key="a")
        uow.add_event(make_event(2))
        if knows_its_numbering(store):
            seq = numbering(uow).next_event_seq() or 0
            numbering(uow).add_numbered_events([NumberedEvent(numbered(3, seq), "b")])
        else:
            uow.add_event(make_event(3), dedup_key="b")
    many = [f"k{n}" for n in range(2500)]  # more than one chunk of keys
    with store.transaction() as uow:
        held = cast(HeldDedupKeys, uow)
        assert held.held_dedup_keys(["a", "b", "c", "a"]) == {"a", "b"}
        assert held.held_dedup_keys([]) == set()
        assert held.held_dedup_keys([*many, "b"]) == {"b"}
