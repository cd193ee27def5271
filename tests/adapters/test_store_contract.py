"""The store contract: one suite, run on the memory store, SQLite and PostgreSQL alike.

Each test says what a user of the store sees, port by port: what comes back, in which order,
and what is refused. What all records share (time zones, JSON, rollback) is in
`test_store_records`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from support.messages import T0, make_message, make_sms
from support.records import make_contact, make_event, make_run, make_trace
from tidings.errors import StoreError
from tidings.model.contacts import Channel
from tidings.model.events import IdentifierKind
from tidings.model.messages import MessageStatus
from tidings.model.runs import Outcome, RunStatus
from tidings.ports import EventHead, RunCount, Store

EMAIL = IdentifierKind.email_id
PHONE = IdentifierKind.phone_id


class BoomError(Exception):
    """Raised inside a transaction to make it roll back."""


# -- contacts ---------------------------------------------------------------------------


def test_a_saved_contact_reads_back_whole(store: Store) -> None:
    contact = make_contact(
        identifiers={EMAIL: "ada@example.org", PHONE: "+33612345678"},
        attributes={"FIRSTNAME": "Ada", "VIP": True, "SCORE": 4.5, "ORDERS": 3},
        timezone="Europe/Paris",
        unsubscribed=frozenset({Channel.sms}),
    )
    with store.transaction() as uow:
        uow.save_contact(contact)
    with store.transaction() as uow:
        assert uow.get_contact("contact-1") == contact
        assert uow.get_contact("nobody") is None


def test_contacts_are_found_by_any_identifier_oldest_first(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact(2, identifiers={PHONE: "+33600000002"}))
        uow.save_contact(make_contact(1, identifiers={EMAIL: "one@example.org"}))
        uow.save_contact(make_contact(3, identifiers={EMAIL: "three@example.org"}))
    with store.transaction() as uow:
        found = uow.find_contacts({EMAIL: "one@example.org", PHONE: "+33600000002"})
        assert [c.id for c in found] == ["contact-1", "contact-2"]
        assert [c.id for c in uow.find_contacts({PHONE: "+33600000003"})] == []
        assert uow.find_contacts({}) == []


def test_saving_a_contact_replaces_its_identifiers(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact(identifiers={EMAIL: "old@example.org"}))
    with store.transaction() as uow:
        uow.save_contact(make_contact(identifiers={EMAIL: "new@example.org", PHONE: "+331"}))
    with store.transaction() as uow:
        assert uow.find_contacts({EMAIL: "old@example.org"}) == []
        [found] = uow.find_contacts({PHONE: "+331"})
        assert found.identifiers == {EMAIL: "new@example.org", PHONE: "+331"}
        # The freed identifier can go to someone else.
        uow.save_contact(make_contact(2, identifiers={EMAIL: "old@example.org"}))
    with store.transaction() as uow:
        assert [c.id for c in uow.find_contacts({EMAIL: "old@example.org"})] == ["contact-2"]


def test_an_identifier_held_by_another_contact_is_refused(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact(1, identifiers={EMAIL: "shared@example.org"}))
    with store.transaction() as uow:
        with pytest.raises(StoreError, match=r"email_id='shared@example.org'.*contact-1"):
            uow.save_contact(make_contact(2, identifiers={EMAIL: "shared@example.org"}))
        # The refusal wrote nothing, and the transaction is still usable.
        uow.save_contact(make_contact(3))
    with store.transaction() as uow:
        assert uow.get_contact("contact-2") is None
        assert uow.get_contact("contact-3") is not None
        [owner] = uow.find_contacts({EMAIL: "shared@example.org"})
        assert owner.id == "contact-1"


# -- events -----------------------------------------------------------------------------


def test_events_get_increasing_seqs_and_come_back_as_stored(store: Store) -> None:
    with store.transaction() as uow:
        first, new_first = uow.add_event(make_event(1))
        second, new_second = uow.add_event(make_event(2))
    assert new_first and new_second
    assert first.seq is not None and second.seq is not None and first.seq < second.seq
    assert first == make_event(1).model_copy(update={"seq": first.seq})
    with store.transaction() as uow:
        assert uow.claim_events(10) == [first, second]


def test_a_dedup_key_seen_before_returns_the_stored_event(store: Store) -> None:
    with store.transaction() as uow:
        stored, created = uow.add_event(make_event(1), dedup_key="api:abc")
    with store.transaction() as uow:
        again, created_again = uow.add_event(make_event(2), dedup_key="api:abc")
        _other, created_other = uow.add_event(make_event(3), dedup_key="api:def")
        _plain, created_plain = uow.add_event(make_event(1))
    assert created and not created_again and created_other and created_plain
    assert again == stored and again.id == "event-1"
    with store.transaction() as uow:
        events, total = uow.list_events()
    assert total == 3
    assert sorted(e.id for e in events) == ["event-1", "event-1", "event-3"]


def test_claims_take_unprocessed_events_in_seq_order(store: Store) -> None:
    with store.transaction() as uow:
        # Received in this order, whatever their event times say.
        seqs = [uow.add_event(make_event(n))[0].seq for n in (3, 1, 2)]
    with store.transaction() as uow:
        claimed = uow.claim_events(2)
        assert [e.seq for e in claimed] == seqs[:2]
        uow.mark_events_processed([e.seq for e in claimed if e.seq is not None])
    with store.transaction() as uow:
        assert [e.seq for e in uow.claim_events(10)] == seqs[2:]
    with pytest.raises(BoomError), store.transaction() as uow:
        uow.mark_events_processed([s for s in seqs[2:] if s is not None])
        raise BoomError
    with store.transaction() as uow:
        assert [e.seq for e in uow.claim_events(10)] == seqs[2:]


def test_claimed_heads_are_the_claimed_events_and_read_whole_by_seq(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_event(make_event(1), processed=True)
        stored = [uow.add_event(make_event(n, **extra))[0] for n, extra in _HEAD_CASES]
    with store.transaction() as uow:
        heads = uow.claim_event_heads(2)
        assert heads == [EventHead(e.seq or 0, e.name, e.contact_id) for e in stored[:2]]
        assert uow.claim_event_heads(10) == [
            EventHead(e.seq or 0, e.name, e.contact_id) for e in stored
        ]
        # In seq order, each once, whatever the order asked in; unknown seqs are left out.
        seqs = [e.seq or 0 for e in stored]
        assert uow.get_events([seqs[2], seqs[0], 999_999, seqs[0]]) == [stored[0], stored[2]]
        assert uow.get_events([]) == []
        uow.mark_events_processed(seqs[:2])
    with store.transaction() as uow:
        assert uow.claim_event_heads(10) == [EventHead(seqs[2], "order_completed", None)]


_HEAD_CASES: list[tuple[int, dict[str, object]]] = [
    (2, {}),
    (3, {}),
    (4, {"name": "order_completed", "contact_id": None}),
]


def test_an_event_added_as_processed_is_history_never_claimed(store: Store) -> None:
    with store.transaction() as uow:
        history, _ = uow.add_event(make_event(1), processed=True)
        live, _ = uow.add_event(make_event(2))
        again, created_again = uow.add_event(make_event(3), dedup_key="k", processed=True)
    with store.transaction() as uow:
        assert uow.claim_events(10) == [live]
        assert uow.contact_events("contact-1") == [history]
        assert uow.contact_events("contact-3") == [again]
        assert uow.list_events()[1] == 3
    assert created_again


def test_a_contacts_events_come_in_event_time_order_with_inclusive_filters(store: Store) -> None:
    late_arrival = make_event(1, contact_id="contact-1", occurred_at=T0 + timedelta(minutes=1))
    with store.transaction() as uow:
        uow.add_event(make_event(3, contact_id="contact-1", name="order_completed"))
        uow.add_event(make_event(2, contact_id="contact-1"))
        uow.add_event(late_arrival)
        uow.add_event(make_event(4, contact_id="contact-2"))
    with store.transaction() as uow:
        assert [e.id for e in uow.contact_events("contact-1")] == ["event-1", "event-2", "event-3"]
        only_carts = uow.contact_events("contact-1", names=["cart_updated"])
        assert [e.id for e in only_carts] == ["event-1", "event-2"]
        window = uow.contact_events(
            "contact-1", since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=3)
        )
        assert [e.id for e in window] == ["event-2", "event-3"]
        assert uow.contact_events("contact-1", names=[]) == []
        assert uow.contact_events("nobody") == []


def test_listing_events_pages_newest_first_and_counts_all_matches(store: Store) -> None:
    with store.transaction() as uow:
        for n in range(1, 8):
            contact = "contact-1" if n % 2 else "contact-2"
            name = "order_completed" if n == 5 else "cart_updated"
            uow.add_event(make_event(n, contact_id=contact, name=name))
    with store.transaction() as uow:
        page, total = uow.list_events(limit=3, offset=1)
        assert ([e.id for e in page], total) == (["event-6", "event-5", "event-4"], 7)
        page, total = uow.list_events(contact_id="contact-1", names=["cart_updated"])
        assert ([e.id for e in page], total) == (["event-7", "event-3", "event-1"], 3)
        page, total = uow.list_events(
            start=T0 + timedelta(minutes=2), end=T0 + timedelta(minutes=3)
        )
        assert ([e.id for e in page], total) == (["event-3", "event-2"], 2)
        page, total = uow.list_events(offset=50)
        assert (page, total) == ([], 7)


# -- runs -------------------------------------------------------------------------------


def test_runs_are_saved_in_bulk_and_replaced_by_id(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_runs([make_run(1), make_run(2, waiting_for=("order_completed",), vars={"a": 1})])
    finished = make_run(
        1,
        status=RunStatus.finished,
        due_at=None,
        finished_at=T0 + timedelta(days=1),
        outcome=Outcome.exited_goal,
        reason="order_completed",
        seq=3,
    )
    with store.transaction() as uow:
        uow.save_runs([finished])
        uow.save_runs([])
    with store.transaction() as uow:
        assert uow.get_run("run-1") == finished
        assert uow.get_run("run-2") == make_run(2, waiting_for=("order_completed",), vars={"a": 1})
        assert uow.get_run("run-3") is None


def test_a_contacts_runs_oldest_first_and_the_last_of_each_key(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_runs(
            [
                make_run(3, key="cart-A"),
                make_run(1, key="cart-A", status=RunStatus.finished, outcome=Outcome.finished),
                make_run(2, key="cart-B", status=RunStatus.finished, outcome=Outcome.finished),
                make_run(4, key="cart-A", workflow_id="browse"),
                make_run(5, contact_id="contact-2"),
            ]
        )
    with store.transaction() as uow:
        assert [r.id for r in uow.runs_for_contact("contact-1")] == ["run-3", "run-4"]
        every = uow.runs_for_contact("contact-1", active_only=False)
        assert [r.id for r in every] == ["run-1", "run-2", "run-3", "run-4"]
        assert [r.id for r in uow.last_runs("contact-1")] == ["run-2", "run-3", "run-4"]
        assert uow.last_runs("nobody") == []


def test_due_runs_are_claimed_earliest_first_and_only_when_waiting(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_runs(
            [
                make_run(3, due_at=T0 + timedelta(hours=3)),
                make_run(1, due_at=T0 + timedelta(hours=1)),
                make_run(2, due_at=T0 + timedelta(hours=2)),
                make_run(4, due_at=T0 + timedelta(hours=4)),
                make_run(5, due_at=None, waiting_for=("order_completed",)),
                make_run(6, due_at=T0, status=RunStatus.finished, outcome=Outcome.finished),
                make_run(7, due_at=T0, status=RunStatus.queued),
            ]
        )
    with store.transaction() as uow:
        assert uow.next_due_at() == T0 + timedelta(hours=1)
        now = T0 + timedelta(hours=3)
        assert [r.id for r in uow.claim_due_runs(now, limit=2)] == ["run-1", "run-2"]
        assert [r.id for r in uow.claim_due_runs(now, limit=10)] == ["run-1", "run-2", "run-3"]
        assert uow.claim_due_runs(T0, limit=10) == []


def test_next_due_at_is_none_without_waiting_timers(store: Store) -> None:
    with store.transaction() as uow:
        assert uow.next_due_at() is None
        uow.save_runs([make_run(1, due_at=None), make_run(2, status=RunStatus.queued)])
        assert uow.next_due_at() is None


def test_run_counts_group_by_workflow_status_and_step(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_runs(
            [
                make_run(1, position="1", due_at=T0 + timedelta(hours=5)),
                make_run(2, position="1", due_at=T0 + timedelta(hours=2)),
                make_run(3, position="2/on_timeout/0", due_at=None),
                make_run(4, workflow_id="browse", status=RunStatus.finished, due_at=None),
            ]
        )
    with store.transaction() as uow:
        assert uow.run_counts() == [
            RunCount("abandoned_cart", "waiting", "1", 2, T0 + timedelta(hours=2)),
            RunCount("abandoned_cart", "waiting", "2/on_timeout/0", 1, None),
            RunCount("browse", "finished", "1", 1, None),
        ]


# -- trace ------------------------------------------------------------------------------


def test_trace_comes_back_in_time_order_then_insertion_order(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_trace([make_trace(5), make_trace(1, message="first at 1")])
        uow.add_trace([make_trace(1, message="second at 1"), make_trace(3, workflow_id="browse")])
        uow.add_trace([make_trace(2, contact_id="contact-2")])
        uow.add_trace([])
    with store.transaction() as uow:
        trace = uow.trace_for_contact("contact-1")
        assert [e.message for e in trace] == [
            "first at 1",
            "second at 1",
            "decision 3",
            "decision 5",
        ]
        assert trace[-1] == make_trace(5)
        browse = uow.trace_for_contact("contact-1", "browse")
        assert [e.message for e in browse] == ["decision 3"]
        assert uow.trace_for_contact("nobody") == []


# -- outbox -----------------------------------------------------------------------------


def test_adding_messages_is_idempotent_by_key(store: Store) -> None:
    with store.transaction() as uow:
        assert uow.add_messages([make_message(1), make_sms(2)]) == 2
    with store.transaction() as uow:
        again = [make_message(1, subject="Changed"), make_message(3), make_message(3)]
        assert uow.add_messages(again) == 1
        assert uow.add_messages([]) == 0
    with store.transaction() as uow:
        assert uow.get_message("run-1:0") == make_message(1)
        assert uow.get_message("run-2:0") == make_sms(2)
        assert uow.get_message("run-9:0") is None


def test_claimed_messages_are_leased_and_come_back_when_the_lease_runs_out(
    store: Store,
) -> None:
    lease = timedelta(minutes=5)
    with store.transaction() as uow:
        uow.add_messages(
            [
                make_message(2, not_before=T0 + timedelta(seconds=2)),
                make_message(1, not_before=T0 + timedelta(seconds=1)),
                make_message(3, not_before=T0 + timedelta(hours=1)),
            ]
        )
    with store.transaction() as uow:
        claimed = uow.claim_messages(T0 + timedelta(minutes=1), limit=10, lease=lease)
    assert [m.key for m in claimed] == ["run-1:0", "run-2:0"]
    assert {m.status for m in claimed} == {MessageStatus.sending}
    with store.transaction() as uow:
        assert uow.get_message("run-1:0") == claimed[0]
        # Still leased: nobody else gets them.
        assert uow.claim_messages(T0 + timedelta(minutes=5), limit=10, lease=lease) == []
        # The claimant died: past the lease, they are claimed again.
        reclaimed = uow.claim_messages(T0 + timedelta(minutes=7), limit=1, lease=lease)
        assert [m.key for m in reclaimed] == ["run-1:0"]


def test_a_message_recorded_as_sending_without_a_claim_is_not_stuck(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_messages([make_message(1, status=MessageStatus.sending)])
    with store.transaction() as uow:
        claimed = uow.claim_messages(T0, limit=10, lease=timedelta(minutes=5))
    assert [m.key for m in claimed] == ["run-1:0"]


def test_one_claim_takes_pending_and_lapsed_messages_in_due_order(store: Store) -> None:
    lease = timedelta(minutes=5)
    with store.transaction() as uow:
        uow.add_messages(
            [
                make_message(1, not_before=T0 + timedelta(seconds=3)),
                make_message(2, not_before=T0 + timedelta(seconds=1)),
                make_message(3, not_before=T0 + timedelta(seconds=4)),
                make_message(4, not_before=T0 + timedelta(seconds=2)),
            ]
        )
        # Messages 2 and 4 claimed by a worker that then died: their lease runs out at T0 + 5 min.
        uow.claim_messages(T0 + timedelta(seconds=2), limit=10, lease=lease)
    with store.transaction() as uow:
        claimed = uow.claim_messages(T0 + timedelta(minutes=6), limit=3, lease=lease)
    # Lapsed and pending together, earliest due first, the limit counting both.
    assert [m.key for m in claimed] == ["run-2:0", "run-4:0", "run-1:0"]


def test_saved_delivery_state_decides_the_next_claim(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_messages([make_message(1), make_message(2)])
        first, second = uow.claim_messages(T0, limit=10, lease=timedelta(minutes=5))
        uow.save_message(
            first.model_copy(update={"status": MessageStatus.sent, "sent_at": T0, "attempts": 1})
        )
        retry_at = T0 + timedelta(minutes=30)
        uow.save_message(
            second.model_copy(
                update={
                    "status": MessageStatus.pending,
                    "attempts": 1,
                    "next_attempt_at": retry_at,
                    "last_error": "421 try later",
                    "subject": "content is not delivery state",
                }
            )
        )
    with store.transaction() as uow:
        sent = uow.get_message("run-1:0")
        assert sent is not None and (sent.status, sent.sent_at) == (MessageStatus.sent, T0)
        assert uow.next_message_due_at() == retry_at
        assert uow.claim_messages(retry_at - timedelta(seconds=1), 10, timedelta(minutes=5)) == []
        [again] = uow.claim_messages(retry_at, 10, timedelta(minutes=5))
        assert (again.key, again.attempts, again.last_error) == ("run-2:0", 1, "421 try later")
        assert again.subject == "Hello 2"


def test_saving_an_unknown_message_is_refused(store: Store) -> None:
    with store.transaction() as uow, pytest.raises(StoreError, match="run-1:0"):
        uow.save_message(make_message(1))


def test_next_message_due_at_counts_pending_messages_and_running_leases(store: Store) -> None:
    with store.transaction() as uow:
        assert uow.next_message_due_at() is None
        uow.add_messages([make_message(1), make_message(2, not_before=T0 + timedelta(hours=2))])
        assert uow.next_message_due_at() == T0
        uow.claim_messages(T0, limit=1, lease=timedelta(minutes=10))
        assert uow.next_message_due_at() == T0 + timedelta(minutes=10)


def test_a_contacts_messages_oldest_first(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_messages(
            [
                make_message(2, contact_id="contact-1", created_at=T0 + timedelta(seconds=2)),
                make_message(1, contact_id="contact-1", created_at=T0 + timedelta(seconds=1)),
                make_message(3, contact_id="contact-2"),
            ]
        )
    with store.transaction() as uow:
        keys = [m.key for m in uow.messages_for_contact("contact-1")]
    assert keys == ["run-1:0", "run-2:0"]


# -- workflow versions ------------------------------------------------------------------


def test_workflow_versions_are_kept_once(store: Store) -> None:
    source = "id: welcome\nsteps:\n  - send_email: {template: hi}  # 👋\n"
    with store.transaction() as uow:
        uow.save_workflow_version("welcome", "v1", source)
        uow.save_workflow_version("welcome", "v1", source)
    with store.transaction() as uow:
        assert uow.get_workflow_version("welcome", "v1") == source
        assert uow.get_workflow_version("welcome", "v2") is None
        with pytest.raises(StoreError, match="'welcome' version 'v1'"):
            uow.save_workflow_version("welcome", "v1", source + "# edited\n")
    with store.transaction() as uow:
        assert uow.get_workflow_version("welcome", "v1") == source
