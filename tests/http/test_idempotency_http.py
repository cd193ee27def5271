"""Each event stored once: Idempotency-Key, byte-identical repeats within the window (across
bucket boundaries), and what is *not* a duplicate."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from support.daemon import T0, Daemon

BODY = json.dumps(
    {
        "event_name": "cart_updated",
        "identifiers": {"email_id": "jo@example.org"},
        "event_properties": {"total": 10},
    }
).encode()


def test_idempotency_key_dedups_even_different_bodies(daemon: Daemon) -> None:
    with daemon.client() as client:
        first = client.post("/v3/events", content=BODY, headers={"Idempotency-Key": "order-1"})
        daemon.clock.advance(timedelta(hours=3))  # far past the duplicate window
        again = client.post(
            "/v3/events",
            content=BODY.replace(b"10", b"11"),
            headers={"Idempotency-Key": "order-1"},
        )
        other = client.post("/v3/events", content=BODY, headers={"Idempotency-Key": "order-2"})
    assert [r.status_code for r in (first, again, other)] == [204, 204, 204]
    assert [e.properties["total"] for e in daemon.events()] == [10, 10]


def test_idempotency_key_on_a_batch_is_per_item(daemon: Daemon) -> None:
    items = [json.loads(BODY) | {"event_properties": {"n": n}} for n in range(3)]
    with daemon.client() as client:
        for _ in range(2):
            response = client.post(
                "/v3/events/batch", json={"events": items}, headers={"Idempotency-Key": "b-1"}
            )
            assert (response.status_code, response.json()) == (
                202,
                {"message": "Batch accepted", "count": 3},
            )
    assert sorted(e.properties["n"] for e in daemon.events()) == [0, 1, 2]


@pytest.mark.parametrize(
    "start_offset",
    [timedelta(0), timedelta(seconds=299), timedelta(seconds=150)],
    ids=["bucket start", "just before a bucket boundary", "mid bucket"],
)
def test_byte_identical_repeat_within_the_window_is_stored_once(
    make_daemon: Callable[..., Daemon], start_offset: timedelta
) -> None:
    daemon = make_daemon()
    daemon.clock.set(T0.replace(minute=0) + start_offset)  # T0 is on a 5-minute boundary
    with daemon.client() as client:
        assert client.post("/v3/events", content=BODY).status_code == 204
        daemon.clock.advance(timedelta(seconds=2))  # the SDK's retry, maybe in the next bucket
        assert client.post("/v3/events", content=BODY).status_code == 204
        daemon.clock.advance(timedelta(seconds=280))  # still within 5 minutes of the first
        assert client.post("/v3/events", content=BODY).status_code == 204
    assert len(daemon.events()) == 1


def test_repeat_after_the_window_is_a_new_event(daemon: Daemon) -> None:
    with daemon.client() as client:
        client.post("/v3/events", content=BODY)
        daemon.clock.advance(timedelta(minutes=5, seconds=1))
        client.post("/v3/events", content=BODY)
    assert len(daemon.events()) == 2


def test_same_dated_event_repeated_is_stored_once(daemon: Daemon) -> None:
    dated = json.loads(BODY) | {"event_date": "2024-04-01T10:00:00+02:00"}
    with daemon.client() as client:
        client.post("/v3/events", json=dated)
        daemon.clock.advance(timedelta(minutes=1))
        client.post("/v3/events", json=dated)
        client.post("/v3/events", json=dated | {"event_date": "2024-04-01T10:00:01+02:00"})
    assert len(daemon.events()) == 2


def test_a_duplicate_does_not_replay_its_contact_update(daemon: Daemon) -> None:
    first = json.loads(BODY) | {"contact_properties": {"PLAN": "free"}}
    with daemon.client() as client:
        client.post("/v3/events", json=first)
        client.post(
            "/v3/events",
            json={
                "event_name": "upgraded",
                "identifiers": {"email_id": "jo@example.org"},
                "contact_properties": {"PLAN": "pro"},
            },
        )
        client.post("/v3/events", json=first)  # a late retry of the first
    events = daemon.events()
    assert [e.name for e in events] == ["cart_updated", "upgraded"]
    contact = daemon.contact(events[0].contact_id or "")
    assert contact is not None
    assert contact.attributes == {"PLAN": "pro"}


def test_identical_items_inside_one_batch_are_all_kept(daemon: Daemon) -> None:
    item = json.loads(BODY)
    with daemon.client() as client:
        response = client.post("/v3/events/batch", json={"events": [item, item]})
        retry = client.post("/v3/events/batch", json={"events": [item, item]})
    assert (response.status_code, retry.status_code) == (202, 202)
    assert len(daemon.events()) == 2


def test_on_ingested_is_called_only_for_new_events(daemon: Daemon) -> None:
    with daemon.client() as client:
        client.post("/v3/events", content=BODY)
        client.post("/v3/events", content=BODY)
    assert daemon.wakeups == [1]
