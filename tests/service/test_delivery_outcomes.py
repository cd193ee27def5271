"""Outcomes recorded together: the sends that finish while others are recorded are written in
one transaction, and a transaction that fails costs no delivered message a second send."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from support.messages import T0, make_message
from support.senders import Crash, ScriptedSender
from tidings.adapters.clock import ManualClock
from tidings.compile.templates import TemplateCatalog
from tidings.engine.decision import Environment
from tidings.errors import StoreError, TemporaryDeliveryError
from tidings.model.messages import Message, MessageStatus
from tidings.model.trace import TraceKind
from tidings.ports import Store, UnitOfWork
from tidings.service.delivery import DeliveryStats, DeliveryWorker
from tidings.service.delivery_outcomes import Outcome, OutcomeRecorder
from tidings.service.registry import WorkflowRegistry

LEASE = timedelta(minutes=5)


class _Recording:
    """A unit of work that notes the outcomes it saves; the rest passes straight through."""

    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner
        self.saved: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save_message(self, message: Message) -> None:
        self._inner.save_message(message)
        self.saved.append(message.key)


class WatchedStore:
    """A store that keeps, per transaction, the keys whose state it saved; and that fails the
    transactions `fail` says should fail (given those keys), as a commit that fails would."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.saves: list[list[str]] = []  # one list per committed transaction that saved any
        self.fail: Any = lambda keys: False

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        with self.inner.transaction() as uow:
            recording = _Recording(uow)
            yield recording  # type: ignore[misc]
            if recording.saved and self.fail(recording.saved):
                raise StoreError(f"commit failed for {recording.saved}")
        if recording.saved:
            self.saves.append(recording.saved)


class CountingSender(ScriptedSender):
    """A scripted sender that counts its sends per recipient."""

    def __init__(self, answers: dict[str, BaseException | str] | None = None) -> None:
        super().__init__(answers or {})
        self.sends: dict[str, int] = {}

    async def send_email(self, message: Message) -> str:
        self.sends[message.to] = self.sends.get(message.to, 0) + 1
        return await super().send_email(message)

    send_sms = send_email


def make_worker(store: Any, clock: ManualClock, sender: Any) -> DeliveryWorker:
    catalog = TemplateCatalog.empty()  # these messages' runs are not stored: no goals to judge
    env = Environment(templates=catalog, mail_from="shop@example.com", sms_sender="Shop")
    return DeliveryWorker(
        store, sender, sender, clock, registry=WorkflowRegistry(catalog), env=env, lease=LEASE
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def queue(store: Store, count: int) -> list[Message]:
    messages = [make_message(n) for n in range(1, count + 1)]
    with store.transaction() as uow:
        uow.add_messages(messages)
    return messages


def rows(store: Store, messages: list[Message]) -> list[tuple[MessageStatus, int]]:
    with store.transaction() as uow:
        found = [uow.get_message(m.key) for m in messages]
    return [(m.status, m.attempts) for m in found if m is not None]


def delivered_entries(store: Store, messages: list[Message]) -> list[str]:
    with store.transaction() as uow:
        return [
            str(e.data["key"])
            for m in messages
            for e in uow.trace_for_contact(m.contact_id)
            if e.kind is TraceKind.delivered
        ]


def test_outcomes_that_finish_together_are_recorded_in_one_transaction(
    store: Store, clock: ManualClock
) -> None:
    watched = WatchedStore(store)
    messages = queue(store, 3)
    sender = CountingSender()

    stats = asyncio.run(make_worker(watched, clock, sender).run_once())

    assert stats == DeliveryStats(claimed=3, sent=3)
    assert watched.saves == [["run-1:0", "run-2:0", "run-3:0"]]  # in claim order
    assert rows(store, messages) == [(MessageStatus.sent, 1)] * 3
    assert delivered_entries(store, messages) == ["run-1:0", "run-2:0", "run-3:0"]


def test_a_failed_batch_of_outcomes_is_recorded_one_by_one_and_nothing_is_sent_twice(
    store: Store, clock: ManualClock
) -> None:
    watched = WatchedStore(store)
    watched.fail = lambda keys: len(keys) > 1  # the batch fails; each alone commits
    messages = queue(store, 3)
    sender = CountingSender({"user2@example.org": TemporaryDeliveryError("451 later")})

    stats = asyncio.run(make_worker(watched, clock, sender).run_once())

    assert stats == DeliveryStats(claimed=3, sent=2, retrying=1)
    assert watched.saves == [["run-1:0"], ["run-2:0"], ["run-3:0"]]
    assert rows(store, messages) == [
        (MessageStatus.sent, 1),
        (MessageStatus.pending, 1),
        (MessageStatus.sent, 1),
    ]
    assert delivered_entries(store, messages) == ["run-1:0", "run-3:0"]  # none from the batch
    clock.advance(timedelta(days=1))
    assert asyncio.run(make_worker(store, clock, CountingSender()).run_once()) == DeliveryStats(
        claimed=1, sent=1
    )
    assert sender.sends == {f"user{n}@example.org": 1 for n in (1, 2, 3)}


def test_an_outcome_that_cannot_be_recorded_is_sent_again_after_its_lease_as_before(
    store: Store, clock: ManualClock
) -> None:
    watched = WatchedStore(store)
    watched.fail = lambda keys: "run-2:0" in keys  # the batch fails, and run-2's own try too
    messages = queue(store, 3)
    sender = CountingSender()

    with pytest.raises(StoreError, match="run-2:0"):
        asyncio.run(make_worker(watched, clock, sender).run_once())

    # The others are recorded; run-2 is left `sending`, as a crash before its record leaves it.
    assert rows(store, messages) == [
        (MessageStatus.sent, 1),
        (MessageStatus.sending, 0),
        (MessageStatus.sent, 1),
    ]
    again = CountingSender()
    worker = make_worker(store, clock, again)
    assert asyncio.run(worker.run_once()) == DeliveryStats()  # its lease still holds
    clock.advance(LEASE)
    assert asyncio.run(worker.run_once()) == DeliveryStats(claimed=1, sent=1)
    assert again.sends == {"user2@example.org": 1}  # only the one never recorded goes again
    assert delivered_entries(store, messages) == ["run-1:0", "run-2:0", "run-3:0"]


def test_a_crash_beside_finished_sends_records_them_before_the_round_is_abandoned(
    store: Store, clock: ManualClock
) -> None:
    messages = queue(store, 3)
    sender = CountingSender({"user2@example.org": Crash()})

    with pytest.raises(Crash):
        asyncio.run(make_worker(store, clock, sender).run_once())

    assert rows(store, messages) == [
        (MessageStatus.sent, 1),
        (MessageStatus.sending, 0),
        (MessageStatus.sent, 1),
    ]


def test_an_outcome_is_recorded_against_the_message_as_it_is_now(store: Store) -> None:
    """A message claimed, then changed by others before its outcome is recorded: recalled (no
    longer sending), or given up by its lease and attempted again elsewhere (sending, with more
    attempts). The first outcome is dropped; the second counts the attempts made meanwhile."""
    clock = ManualClock(T0)
    recorder = OutcomeRecorder(clock, timedelta(days=1), 60.0, 3600.0)
    kept, recalled, retried = make_message(1), make_message(2), make_message(3)
    with store.transaction() as uow:
        uow.add_messages([kept, recalled, retried])
        claimed = {m.key: m for m in uow.claim_messages(T0, 10, LEASE)}
    with store.transaction() as uow:
        uow.save_message(
            claimed[recalled.key].model_copy(
                update={"status": MessageStatus.cancelled, "last_error": "exit goal met"}
            )
        )
        # Another worker's attempt (as if this one's lease had run out) failed, due again now.
        uow.save_message(
            claimed[retried.key].model_copy(
                update={"status": MessageStatus.pending, "attempts": 1, "last_error": "451"}
            )
        )
    with store.transaction() as uow:
        [again] = uow.claim_messages(clock.now(), 10, LEASE)
        assert (again.key, again.attempts) == (retried.key, 1)
    with store.transaction() as uow:
        statuses = recorder.record_all(
            uow, [(claimed[key], Outcome(reference="ok")) for key in sorted(claimed)]
        )
    assert statuses == [MessageStatus.sent, None, MessageStatus.sent]
    with store.transaction() as uow:
        now = {key: uow.get_message(key) for key in claimed}
        delivered = [e for e in uow.trace_for_contact("contact-1") if e.kind is TraceKind.delivered]
    assert {k: (m.status, m.attempts) for k, m in now.items() if m} == {
        kept.key: (MessageStatus.sent, 1),
        recalled.key: (MessageStatus.cancelled, 0),
        retried.key: (MessageStatus.sent, 2),
    }
    assert now[recalled.key] is not None and now[recalled.key].last_error == "exit goal met"
    assert len(delivered) == 1
