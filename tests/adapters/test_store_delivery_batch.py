"""The store contract for messages and runs read in bulk (`DeliveryBatch`), on the memory
store, SQLite and PostgreSQL alike: the same records as the one-at-a-time reads, by key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from support.messages import T0, make_message, make_sms
from support.records import make_event, make_run
from tidings.model.events import Event
from tidings.model.messages import MessageStatus
from tidings.model.runs import Outcome, RunStatus
from tidings.ports import DeliveryBatch, Store, UnitOfWork


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
        ids = [f"run-{n}" for n in range(1, 1203)]
        assert [r.id for r in bulk(uow).get_runs(ids)] == sorted(ids)
