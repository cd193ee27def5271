"""The store contract for messages and runs read in bulk (`DeliveryBatch`), on the memory
store, SQLite and PostgreSQL alike: the same records as the one-at-a-time reads, by key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest

from support.messages import T0, make_message, make_sms
from support.records import make_event, make_run
from tidings.adapters.metrics import MeteredStore, Metrics
from tidings.errors import StoreError
from tidings.model.events import Event
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Outcome, RunStatus
from tidings.ports import DeliveryBatch, Store, UnitOfWork
from tidings.service.batch_reads import save_messages


def bulk(uow: UnitOfWork) -> DeliveryBatch:
    """The unit of work's bulk reads (every store offers them)."""
    return cast(DeliveryBatch, uow)


def test_messages_are_read_by_key_as_one_at_a_time_reads_see_them(store: Store) -> None:
    mail, text, other = make_message(2), make_sms(1), make_message(10)
    with store.transaction() as uow:
        uow.add_messages([mail, text, other])
        uow.claim_messages(T0, 3, timedelta(minutes=5))
        uow.save_message(other.model_copy(update={"status": MessageStatus.failed, "attempts": 1}))
        uow.save_message(text.model_copy(update={"attempts": 1, "last_error": "451 later"}))
    with store.transaction() as uow:
        found = bulk(uow).get_messages([other.key, "nope", mail.key, text.key, mail.key])
        expected = [uow.get_message(k) for k in sorted([mail.key, text.key, other.key])]
        assert found == expected
        assert [m.status for m in found] == [
            MessageStatus.failed,  # run-10:0
            MessageStatus.pending,  # run-1:0
            MessageStatus.sending,  # run-2:0
        ]
        assert bulk(uow).get_messages([]) == []
        assert bulk(uow).get_messages(["nope"]) == []


def test_message_states_are_the_status_and_attempts_one_at_a_time_reads_see(
    store: Store,
) -> None:
    mail, text, other = make_message(2), make_sms(1), make_message(10)
    with store.transaction() as uow:
        uow.add_messages([mail, text, other])
        uow.claim_messages(T0, 3, timedelta(minutes=5))
        uow.save_message(other.model_copy(update={"status": MessageStatus.failed, "attempts": 1}))
        uow.save_message(text.model_copy(update={"attempts": 2, "last_error": "451 later"}))
    with store.transaction() as uow:
        states = bulk(uow).message_states([other.key, "nope", mail.key, text.key, mail.key])
        assert states == {
            other.key: (MessageStatus.failed, 1),
            text.key: (MessageStatus.pending, 2),
            mail.key: (MessageStatus.sending, 0),
        }
        for key, (status, attempts) in states.items():
            one = uow.get_message(key)
            assert one is not None and (one.status, one.attempts) == (status, attempts)
        assert bulk(uow).message_states([]) == {}


def test_runs_are_read_by_id_as_one_at_a_time_reads_see_them(store: Store) -> None:
    ended = make_run(2, status=RunStatus.finished, outcome=Outcome.exited_goal, reason="order")
    with store.transaction() as uow:
        uow.save_runs([ended, make_run(1), make_run(3)])
    with store.transaction() as uow:
        found = bulk(uow).get_runs(["run-3", "run-2", "ghost", "run-2"])
        assert found == [uow.get_run("run-2"), uow.get_run("run-3")]
        assert found[0] == ended
        assert bulk(uow).get_runs([]) == []


def test_events_of_many_contacts_are_each_contacts_events_in_one_list(store: Store) -> None:
    when = [3, 1, 2, 1, 5, 4]
    with store.transaction() as uow:
        for n, hours in enumerate(when, start=1):
            contact = f"contact-{n % 3}"
            name = "order_completed" if n % 2 else "cart_updated"
            uow.add_event(
                make_event(
                    n, name=name, contact_id=contact, occurred_at=T0 + timedelta(hours=hours)
                )
            )
    contacts = ["contact-1", "contact-2", "contact-9"]
    with store.transaction() as uow:

        def one_by_one(**window: Any) -> list[Event]:
            found = [e for c in contacts for e in uow.contact_events(c, **window)]
            return sorted(found, key=lambda e: (e.occurred_at, e.seq or 0))

        windows: list[dict[str, Any]] = [
            {},
            {"names": ["order_completed"]},
            {"since": T0 + timedelta(hours=2)},
            {"names": {"cart_updated", "nothing"}, "since": T0 + timedelta(hours=1)},
        ]
        for window in windows:
            found = bulk(uow).contact_events_many(contacts, **window)
            assert found == one_by_one(**window)
        everything = bulk(uow).contact_events_many(contacts)
        assert [e.id for e in everything] == ["event-2", "event-4", "event-1", "event-5"]
        assert bulk(uow).contact_events_many([]) == []


def test_bulk_reads_of_more_keys_than_one_query_takes_miss_none(store: Store) -> None:
    messages = [make_message(n) for n in range(1, 1203)]
    with store.transaction() as uow:
        uow.add_messages(messages)
        uow.save_runs([make_run(n) for n in range(1, 1203)])
    with store.transaction() as uow:
        keys = [m.key for m in messages]
        assert [m.key for m in bulk(uow).get_messages(keys)] == sorted(keys)
        assert sorted(bulk(uow).message_states(keys)) == sorted(keys)
        ids = [f"run-{n}" for n in range(1, 1203)]
        assert [r.id for r in bulk(uow).get_runs(ids)] == sorted(ids)


def test_states_saved_together_are_what_one_at_a_time_saves_give(store: Store) -> None:
    # The same outcomes saved on two copies of the messages, together and one at a time: a
    # sent, a retry, a failure and one saved twice (its last state wins), then one re-leased.
    def outcomes(n: int) -> list[Message]:
        mail, text, other = make_message(n), make_sms(n + 1), make_message(n + 2)
        return [
            mail.model_copy(update={"status": MessageStatus.sent, "attempts": 1, "sent_at": T0}),
            text.model_copy(
                update={"attempts": 1, "last_error": "451 later", "next_attempt_at": T0}
            ),
            other.model_copy(update={"status": MessageStatus.failed, "last_error": "550"}),
            other.model_copy(update={"status": MessageStatus.failed, "last_error": "550 gone"}),
            text.model_copy(update={"status": MessageStatus.sending, "attempts": 2}),
        ]

    together, one_by_one = outcomes(10), outcomes(20)
    with store.transaction() as uow:
        uow.add_messages([m.model_copy(update={"attempts": 0}) for m in together + one_by_one])
        uow.claim_messages(T0, 10, timedelta(minutes=5))
    with store.transaction() as uow:
        save_messages(uow, together)
        for message in one_by_one:
            uow.save_message(message)
    later = T0 + timedelta(minutes=6)  # past the lease: only the re-leased one is claimable
    with store.transaction() as uow:
        keys = {m.key for m in together + one_by_one}
        found = {m.key: m for m in bulk(uow).get_messages(keys)}
        reclaimed = [m.key for m in uow.claim_messages(later, 10, timedelta(minutes=5))]

    def state(message: Message | None) -> dict[str, Any]:
        assert message is not None
        return message.model_dump(
            exclude={"key", "run_id", "contact_id", "to", "subject", "text", "html"}
        )

    for saved, single in zip(together, one_by_one, strict=True):
        assert state(found[saved.key]) == state(found[single.key])
    assert found[together[2].key].last_error == "550 gone"
    assert sorted(reclaimed) == sorted([together[1].key, one_by_one[1].key])


def test_saving_together_an_unknown_message_is_refused_as_one_save_is(store: Store) -> None:
    ghost = make_message(404)
    with pytest.raises(StoreError) as single, store.transaction() as uow:
        uow.save_message(ghost)
    with pytest.raises(StoreError) as together, store.transaction() as uow:
        uow.add_messages([make_message(1)])
        save_messages(uow, [make_message(1), ghost])
    assert str(together.value).endswith(str(single.value).split(": ", 1)[-1])
    with store.transaction() as uow:
        assert uow.get_message(make_message(1).key) is None  # rolled back with it


class _CountingSaves:
    """A wrapper that passes every other name through, as the metered unit of work does."""

    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner
        self.saved: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save_message(self, message: Message) -> None:
        self._inner.save_message(message)
        self.saved.append(message.key)


def test_a_wrapper_that_counts_single_saves_sees_each_of_a_batch(store: Store) -> None:
    messages = [make_message(n) for n in (1, 2)]
    with store.transaction() as uow:
        uow.add_messages(messages)
        wrapper = _CountingSaves(uow)
        save_messages(
            cast(UnitOfWork, wrapper), [m.model_copy(update={"attempts": 3}) for m in messages]
        )
        assert wrapper.saved == [m.key for m in messages]
        assert [m.attempts for m in bulk(uow).get_messages([m.key for m in messages])] == [3, 3]


def test_the_metered_store_counts_states_saved_together(store: Store) -> None:
    metrics = Metrics()
    metered = MeteredStore(store, metrics)
    sent = make_message(1).model_copy(update={"status": MessageStatus.sent, "attempts": 1})
    failed = make_sms(2).model_copy(update={"status": MessageStatus.failed, "attempts": 1})
    with metered.transaction() as uow:
        uow.add_messages([make_message(1), make_sms(2)])
        save_messages(uow, [sent, failed])
    assert metrics.value("tidings_messages_sent_total", channel="email") == 1
    assert metrics.value("tidings_messages_failed_total", channel="sms") == 1
