"""The store contract: one suite, run on the memory store, SQLite and PostgreSQL alike.

Each test says what a user of the store sees: what comes back, in which order, what is
refused, and what a rolled-back transaction leaves behind (nothing).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from support.messages import T0, make_message, make_sms
from support.records import make_contact, make_event, make_run, make_trace
from tidings.errors import StoreError
from tidings.model.contacts import Channel
from tidings.model.events import IdentifierKind
from tidings.model.messages import MessageStatus
from tidings.model.runs import Outcome, RunStatus
from tidings.ports import RunCount, Store

EMAIL = IdentifierKind.email_id
PHONE = IdentifierKind.phone_id
PARIS_SUMMER = timezone(timedelta(hours=2))
KATHMANDU = timezone(timedelta(hours=5, minutes=45))
HONOLULU = timezone(timedelta(hours=-10))


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


# -- what every record shares: time zones, JSON, rollback -------------------------------


def test_times_with_any_offset_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    local = datetime(2024, 5, 1, 14, 45, 30, 123456, tzinfo=KATHMANDU)
    hawaii = datetime(2024, 4, 30, 23, 0, tzinfo=HONOLULU)
    with store.transaction() as uow:
        uow.save_contact(make_contact(created_at=local, updated_at=hawaii))
        event, _ = uow.add_event(make_event(occurred_at=local, received_at=hawaii))
        uow.save_runs([make_run(due_at=local, started_at=hawaii, updated_at=local)])
        uow.add_trace([make_trace(at=local)])
        uow.add_messages([make_message(not_before=local, created_at=hawaii)])
    with store.transaction() as uow:
        contact = uow.get_contact("contact-1")
        [claimed] = uow.claim_events(1)
        run = uow.get_run("run-1")
        [entry] = uow.trace_for_contact("contact-1")
        message = uow.get_message("run-1:0")
        due = uow.claim_due_runs(local, limit=5)
    assert contact is not None and run is not None and message is not None
    times = [
        contact.created_at,
        contact.updated_at,
        event.occurred_at,
        claimed.occurred_at,
        claimed.received_at,
        run.due_at,
        run.started_at,
        entry.at,
        message.not_before,
        message.created_at,
    ]
    assert all(t is not None and t.tzinfo is UTC for t in times)
    assert claimed.occurred_at == local and claimed.received_at == hawaii
    assert run.due_at == local and message.not_before == local
    assert str(claimed.occurred_at) == "2024-05-01 09:00:30.123456+00:00"
    assert [r.id for r in due] == ["run-1"]


def test_time_filters_accept_any_offset(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_event(make_event(1, occurred_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC)))
    noon_in_paris = datetime(2024, 5, 1, 14, 0, tzinfo=PARIS_SUMMER)
    with store.transaction() as uow:
        assert len(uow.contact_events("contact-1", since=noon_in_paris, until=noon_in_paris)) == 1
        assert uow.list_events(start=noon_in_paris + timedelta(microseconds=1))[1] == 0


UNICODE_PROPERTIES = {
    "emoji": "🛒 cart 👩‍👩‍👧‍👦 🇫🇷",
    "rtl": "שלום עולם مرحبا",
    "combining": "e\u0301 vs \u00e9, Z\u0351\u0362a\u0336lgo",
    "zero_width": "a\u200bb\u200dc\ufeff",
    "control": "tab\tnew\nline \u0000 nul",
    "escapes": 'quote " backslash \\ slash /',
    "types": {"int": 3, "float": 3.0, "big": 2**62, "neg": -0.5, "true": True, "none": None},
    "nested": [[1, "2", {"three": [4.25]}], [], {}],
    "z_last_but_ordered": 1,
    "a_first_key_stays_after": 2,
}


def test_json_fields_round_trip_byte_for_byte(store: Store) -> None:
    expected = json.dumps(UNICODE_PROPERTIES, ensure_ascii=False)
    with store.transaction() as uow:
        uow.add_event(
            make_event(properties=UNICODE_PROPERTIES, object={"type": "cart", "ids": ["🛒"]})
        )
        uow.save_contact(make_contact(attributes={"NAME": "Zoë 🌸", "CITY": "تونس"}))
        uow.save_runs([make_run(event=UNICODE_PROPERTIES, vars={"emoji": "✅"})])
        uow.add_trace([make_trace(data=UNICODE_PROPERTIES, message="↪ ok")])
        uow.add_messages([make_message(subject="🎉 Zoë", text="שלום", html="<p>e\u0301</p>")])
    with store.transaction() as uow:
        [event] = uow.claim_events(1)
        contact = uow.get_contact("contact-1")
        run = uow.get_run("run-1")
        [entry] = uow.trace_for_contact("contact-1")
        message = uow.get_message("run-1:0")
    assert contact is not None and run is not None and message is not None
    for value in (event.properties, run.event, entry.data):
        assert json.dumps(value, ensure_ascii=False) == expected
    assert event.object == {"type": "cart", "ids": ["🛒"]}
    assert contact.attributes == {"NAME": "Zoë 🌸", "CITY": "تونس"}
    assert run.vars == {"emoji": "✅"}
    assert entry.message == "↪ ok"
    assert (message.subject, message.text, message.html) == ("🎉 Zoë", "שלום", "<p>e\u0301</p>")


@pytest.mark.parametrize(
    "properties",
    [{"when": datetime(2024, 1, 1, tzinfo=UTC)}, {"score": math.nan}, {"score": math.inf}],
    ids=["datetime", "nan", "infinity"],
)
def test_values_json_cannot_hold_are_refused(store: Store, properties: dict[str, object]) -> None:
    with pytest.raises(StoreError), store.transaction() as uow:
        uow.add_event(make_event(properties=properties))
    with store.transaction() as uow:
        assert uow.list_events() == ([], 0)


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(StoreError), store.transaction() as uow:
        uow.claim_due_runs(datetime(2024, 1, 1), limit=1)
    with pytest.raises(StoreError), store.transaction() as uow:
        uow.save_runs([make_run(due_at=datetime(2024, 1, 1))])
    with store.transaction() as uow:
        assert uow.get_run("run-1") is None


def test_a_transaction_that_raises_leaves_nothing_behind(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact(1))
        uow.add_messages([make_message(1)])
    with pytest.raises(BoomError), store.transaction() as uow:
        uow.save_contact(make_contact(1, attributes={"FIRSTNAME": "Changed"}, identifiers={}))
        uow.save_contact(make_contact(2))
        uow.add_event(make_event(1), dedup_key="k")
        uow.save_runs([make_run(1)])
        uow.add_trace([make_trace(1)])
        uow.add_messages([make_message(2)])
        uow.claim_messages(T0, limit=10, lease=timedelta(minutes=5))
        uow.save_workflow_version("welcome", "v1", "id: welcome")
        raise BoomError
    with store.transaction() as uow:
        assert uow.get_contact("contact-1") == make_contact(1)
        assert uow.find_contacts({EMAIL: "user1@example.org"}) == [make_contact(1)]
        assert uow.get_contact("contact-2") is None
        assert uow.list_events() == ([], 0)
        assert uow.add_event(make_event(9), dedup_key="k")[1] is True
        assert uow.get_run("run-1") is None
        assert uow.trace_for_contact("contact-1") == []
        assert uow.get_message("run-1:0") == make_message(1)
        assert uow.get_message("run-2:0") is None
        assert uow.get_workflow_version("welcome", "v1") is None


def test_returned_records_are_copies(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_runs([make_run(1, vars={"count": 1})])
        run = uow.get_run("run-1")
        assert run is not None
        run.vars["count"] = 99
    with store.transaction() as uow:
        again = uow.get_run("run-1")
        assert again is not None and again.vars == {"count": 1}
