"""The ingest service over every store: durable appends, dedup, and one bad request never
costing the others their events."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.adapters.clock import ManualClock
from tidings.errors import EventError, StoreError
from tidings.model.events import Event, IdentifierKind
from tidings.ports import NumberedEvent, Store, UnitOfWork
from tidings.service import shapes
from tidings.service.ingest import IngestService, Submission
from tidings.service.validation import Limits, parse_json

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def submission(service: IngestService, body: dict[str, Any], **options: Any) -> Submission:
    raw = json.dumps(body).encode()
    event = shapes.brevo_event(parse_json(raw), now=service.clock.now(), limits=service.limits)
    return service.submission([event], key_id="k", body=raw, **options)


def all_events(store: Store) -> list[Event]:
    with store.transaction() as uow:
        events, _ = uow.list_events(limit=1000)
    return sorted(events, key=lambda e: e.seq or 0)


def test_events_are_stored_unprocessed_on_their_contact(store: Store) -> None:
    service = IngestService(store, ManualClock(T0))
    body = {"event_name": "a", "identifiers": {"email_id": "x@y.org"}}
    outcome = service.ingest_now(submission(service, body))
    assert (outcome.stored, outcome.duplicates, outcome.new_contacts) == (1, 0, 1)
    with store.transaction() as uow:
        [claimed] = uow.claim_events(10)  # unprocessed: the engine will take it
        contact = uow.get_contact(claimed.contact_id or "")
    assert contact is not None
    assert contact.identifiers == {IdentifierKind.email_id: "x@y.org"}


def test_history_is_stored_processed_on_its_contact_and_a_live_repeat_stays_history(
    store: Store,
) -> None:
    service = IngestService(store, ManualClock(T0))
    body = {"event_name": "a", "identifiers": {"email_id": "x@y.org"}}
    history = submission(service, body, idempotency_key="k1", history=True)
    outcome = service.ingest_now(history)
    repeat = service.ingest_now(submission(service, body, idempotency_key="k1"))
    live = service.ingest_now(submission(service, body | {"event_name": "b"}))
    assert (outcome.stored, outcome.new_contacts, repeat.duplicates) == (1, 1, 1)
    with store.transaction() as uow:
        assert [e.name for e in uow.claim_events(10)] == ["b"]  # only the live one
        seen = uow.contact_events(outcome.events[0].contact_id or "")
    assert [e.name for e in seen] == ["a", "b"]
    assert live.events[0].contact_id == outcome.events[0].contact_id


class FailOnEvent:
    """A store whose transactions fail when an event named `poison` is added, one by one or
    among events written together (`add_numbered_events`, where the store offers it)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        with self.store.transaction() as uow:
            original = uow.add_event

            def add_event(
                event: Event, *, dedup_key: str | None = None, processed: bool = False
            ) -> tuple[Event, bool]:
                if event.name == "poison":
                    raise StoreError("refused")
                return original(event, dedup_key=dedup_key, processed=processed)

            uow.add_event = add_event  # type: ignore[method-assign]
            add_many = getattr(uow, "add_numbered_events", None)
            if add_many is not None:

                def add_numbered_events(events: Sequence[NumberedEvent]) -> None:
                    if any(numbered.event.name == "poison" for numbered in events):
                        raise StoreError("refused")
                    add_many(events)

                uow.add_numbered_events = add_numbered_events  # type: ignore[attr-defined]
            yield uow


def test_one_failing_request_does_not_cost_the_others(store: Store) -> None:
    service = IngestService(FailOnEvent(store), ManualClock(T0))
    subs = [
        submission(service, {"event_name": name, "identifiers": {"ext_id": name}})
        for name in ("good1", "poison", "good2")
    ]
    results = service.write(subs)
    assert [type(r).__name__ for r in results] == ["Outcome", "StoreError", "Outcome"]
    assert [e.name for e in all_events(store)] == ["good1", "good2"]


def test_unknown_contact_id_refuses_only_that_request(store: Store) -> None:
    service = IngestService(store, ManualClock(T0))
    good = submission(service, {"event_name": "a", "identifiers": {"ext_id": "1"}})
    bad = submission(service, {"event_name": "b", "identifiers": {"contact_id": 77}})
    results = service.write([good, bad])
    assert isinstance(results[1], EventError)
    assert str(results[1]) == "identifiers.contact_id: no contact with id 77"
    assert [e.name for e in all_events(store)] == ["a"]


def test_window_dedup_is_sliding(store: Store) -> None:
    clock = ManualClock(T0 + timedelta(seconds=299))  # just before a 5-minute bucket ends
    service = IngestService(store, clock)
    body = {"event_name": "a", "identifiers": {"ext_id": "1"}, "event_properties": {"v": 1}}
    assert service.ingest_now(submission(service, body)).stored == 1
    clock.advance(timedelta(seconds=2))  # next bucket
    assert service.ingest_now(submission(service, body)).duplicates == 1
    clock.advance(timedelta(minutes=5))
    assert service.ingest_now(submission(service, body)).stored == 1
    assert len(all_events(store)) == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-04-30T10:00:00+02:00", datetime(2024, 4, 30, 8, 0, tzinfo=UTC)),
        ("2024-04-30T10:00:00Z", datetime(2024, 4, 30, 10, 0, tzinfo=UTC)),
        ("2024-04-30T10:00:00", datetime(2024, 4, 30, 10, 0, tzinfo=UTC)),  # no offset: UTC
        ("2024-04-30", datetime(2024, 4, 30, tzinfo=UTC)),
        ("2024-05-02T08:59:59+00:00", datetime(2024, 5, 2, 8, 59, 59, tzinfo=UTC)),  # < 1 day
    ],
)
def test_event_date_forms(raw: str, expected: datetime) -> None:
    body = {"event_name": "a", "identifiers": {"ext_id": "1"}, "event_date": raw}
    event = shapes.brevo_event(body, now=T0, limits=Limits())
    assert event.occurred_at == expected
    assert event.occurred_at.utcoffset() is not None


def test_future_tolerance_is_configurable() -> None:
    body = {"event_name": "a", "identifiers": {"ext_id": "1"}, "event_date": "2024-05-01T10:00:00Z"}
    limits = Limits(future_tolerance=timedelta(minutes=30))
    with pytest.raises(EventError, match="more than 30 minutes in the future"):
        shapes.brevo_event(body, now=T0, limits=limits)


def test_after_a_restart_repeats_are_still_caught(store: Store) -> None:
    clock = ManualClock(T0 + timedelta(seconds=10))
    body = {"event_name": "a", "identifiers": {"ext_id": "1"}}
    dated = body | {"event_date": "2024-05-01T08:00:00+00:00"}
    first = IngestService(store, clock)
    first.ingest_now(submission(first, body))
    first.ingest_now(submission(first, dated))
    clock.advance(timedelta(seconds=30))
    restarted = IngestService(store, clock)  # a new process: its recent index is empty
    # same body, same 5-minute bucket: the store's body key; dated: the store's event
    assert restarted.ingest_now(submission(restarted, body)).duplicates == 1
    clock.advance(timedelta(minutes=4, seconds=25))  # next bucket, still inside the window
    assert restarted.ingest_now(submission(restarted, dated)).duplicates == 1
    assert len(all_events(store)) == 2


def test_a_rolled_back_event_does_not_hide_a_later_one(store: Store) -> None:
    clock = ManualClock(T0)
    service = IngestService(FailOnEvent(store), clock)
    poison = {"event_name": "poison", "identifiers": {"ext_id": "1"}}
    assert isinstance(service.write([submission(service, poison)])[0], StoreError)
    healed = IngestService(store, clock)
    healed.recent = service.recent  # same process, the store works again
    assert healed.ingest_now(submission(healed, poison)).stored == 1


def test_identical_requests_in_one_transaction_are_stored_once(store: Store) -> None:
    service = IngestService(store, ManualClock(T0))
    body = {"event_name": "a", "identifiers": {"ext_id": "1"}, "event_properties": {"x": 1}}
    results = service.write([submission(service, body), submission(service, body)])
    assert [(r.stored, r.duplicates) for r in results if not isinstance(r, Exception)] == [
        (1, 0),
        (0, 1),
    ]
