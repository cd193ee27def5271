"""The store contract, continued: what every record shares, on every store. Times with any
offset come back as the same instant in UTC; JSON fields come back byte for byte; values JSON
cannot hold are refused; a transaction that raises leaves nothing behind."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from support.messages import T0, make_message
from support.records import make_contact, make_event, make_run, make_trace
from tidings.errors import StoreError
from tidings.model.events import IdentifierKind
from tidings.ports import Store

EMAIL = IdentifierKind.email_id
PARIS_SUMMER = timezone(timedelta(hours=2))
KATHMANDU = timezone(timedelta(hours=5, minutes=45))
HONOLULU = timezone(timedelta(hours=-10))


class BoomError(Exception):
    """Raised inside a transaction to make it roll back."""


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


def test_a_contact_s_events_read_back_as_the_event_list_gives_them(store: Store) -> None:
    # contact_events is read on the driver's cursor on SQLite, list_events through SQLAlchemy.
    kept = [
        make_event(1, properties={"cart": {"items": [1, 2.5, None]}, "é": "ü"}),
        make_event(2, object={"id": "o-1"}, conflicts={EMAIL: "contact-9"}, source="api"),
        make_event(3, name="order_completed", occurred_at=T0 - timedelta(days=400)),
    ]
    with store.transaction() as uow:
        for event in kept:
            uow.add_event(event.model_copy(update={"contact_id": "contact-1"}))
    with store.transaction() as uow:
        listed, _ = uow.list_events(contact_id="contact-1")
        assert uow.contact_events("contact-1") == listed[::-1]
        assert uow.contact_events("contact-1", names={"order_completed"}) == [listed[-1]]


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
