"""A batch's writes held back and flushed together leave the store as writing each decision at
once would: same runs, trace in the same order, the same messages counted once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from support.messages import make_message
from support.records import make_contact, make_run, make_trace
from tidings.engine.core import Decision
from tidings.model.runs import RunStatus
from tidings.ports import Store, UnitOfWork
from tidings.service.batches import Batch, PendingWrites
from tidings.service.contact_states import read_active_runs, read_states

DECISIONS = [
    Decision(
        runs=[make_run(1)],
        trace=[make_trace(1), make_trace(2)],
        messages=[make_message(1)],
    ),
    Decision(runs=[make_run(2)], trace=[make_trace(1, message="same time, added later")]),
    Decision(
        runs=[make_run(1, status=RunStatus.finished, due_at=None)],  # run-1 again: this wins
        trace=[make_trace(3)],
        messages=[make_message(1), make_message(2, contact_id="contact-1")],  # run-1:0: once
    ),
]


def one_at_a_time(uow: UnitOfWork) -> int:
    added = 0
    for decision in DECISIONS:
        uow.save_runs(decision.runs)
        uow.add_trace(decision.trace)
        added += uow.add_messages(decision.messages)
    return added


def held_back(uow: UnitOfWork) -> int:
    pending = PendingWrites()
    for decision in DECISIONS:
        pending.hold(uow, decision)
    pending.flush(uow)
    return pending.added


def what_is_stored(store: Store) -> tuple[object, ...]:
    with store.transaction() as uow:
        return (
            uow.runs_for_contact("contact-1", active_only=False),
            [(e.at, e.message) for e in uow.trace_for_contact("contact-1")],
            uow.messages_for_contact("contact-1"),
        )


@pytest.mark.parametrize("write", [one_at_a_time, held_back])
def test_held_writes_are_stored_as_written_one_at_a_time(
    store: Store, write: Callable[[UnitOfWork], int]
) -> None:
    with store.transaction() as uow:
        assert write(uow) == 2

    runs, trace, messages = what_is_stored(store)
    assert [(r.id, r.status) for r in runs] == [
        ("run-1", RunStatus.finished),
        ("run-2", RunStatus.waiting),
    ]
    assert [message for _, message in trace] == [
        "decision 1",
        "same time, added later",
        "decision 2",
        "decision 3",
    ]
    assert [m.key for m in messages] == ["run-1:0", "run-2:0"]


def test_nothing_is_written_before_the_flush_and_each_flush_counts_once(store: Store) -> None:
    with store.transaction() as uow:
        pending = PendingWrites()
        pending.hold(uow, DECISIONS[0])
        assert pending
        assert uow.runs_for_contact("contact-1") == []
        pending.flush(uow)
        assert not pending
        assert [r.id for r in uow.runs_for_contact("contact-1")] == ["run-1"]
        pending.flush(uow)
        assert pending.added == 1


def test_a_decision_s_contact_is_saved_at_once_and_its_state_read_ahead_dropped(
    store: Store,
) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact(1))
        uow.save_contact(make_contact(2))
    changed = make_contact(1, attributes={"FIRSTNAME": "Changed"})
    with store.transaction() as uow:
        batch = Batch(read_states(uow, ["contact-1", "contact-2"], lock=False, history=False))
        batch.hold(uow, Decision(contact=changed))
        assert uow.get_contact("contact-1") == changed
        assert "contact-1" not in batch.states
        assert "contact-2" in batch.states


def test_active_runs_read_ahead_are_answered_until_a_decision_writes_to_their_contact(
    store: Store,
) -> None:
    with store.transaction() as uow:
        uow.save_runs([make_run(1), make_run(2, contact_id="contact-2")])
    with store.transaction() as uow:
        batch = Batch(
            read_states(uow, [], lock=False, history=False),
            read_active_runs(uow, ["contact-1", "contact-2", "contact-3"]),
        )
        assert [r.id for r in batch.runs_for_contact(uow, "contact-1")] == ["run-1"]
        assert batch.runs_for_contact(uow, "contact-3") == []

        batch.hold(uow, Decision(runs=[make_run(3)]))  # contact-1 again: read anew, after it
        assert [r.id for r in batch.runs_for_contact(uow, "contact-1")] == ["run-1", "run-3"]
        assert [r.id for r in batch.runs_for_contact(uow, "contact-2")] == ["run-2"]
        assert "contact-2" in batch.active_runs and "contact-1" not in batch.active_runs
