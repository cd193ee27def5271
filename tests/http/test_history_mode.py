"""`X-Tidings-Mode: history` over a socket: events stored as ingestion stores them, but already
processed (the engine never claims them), for api keys only; Brevo's behaviour without it."""

from __future__ import annotations

from typing import Any

from support.daemon import TRACKER_KEY, Daemon
from tidings.adapters.sql.store import SqlStore
from tidings.model.events import Event, IdentifierKind

HISTORY = {"X-Tidings-Mode": "history"}


def order(email: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_name": "order_completed",
        "identifiers": {"email_id": email},
        "contact_properties": {"FIRSTNAME": "Ann"},
        "event_date": "2024-04-01T10:00:00Z",
        **extra,
    }


def unprocessed(daemon: Daemon) -> list[Event]:
    """What the engine would claim next, read through a new connection."""
    fresh = SqlStore(daemon.db_url)
    try:
        with fresh.transaction() as uow:
            return uow.claim_events(1000)
    finally:
        fresh.close()


def test_a_history_batch_is_stored_on_its_contacts_for_no_workflow(daemon: Daemon) -> None:
    batch = {"events": [order("ann@example.com"), order("bob@example.com")]}
    with daemon.client(**HISTORY) as client:
        answer = client.post("/v3/events/batch", json=batch)

    assert (answer.status_code, answer.json()) == (202, {"message": "Batch accepted", "count": 2})
    assert answer.headers["X-Tidings-Mode"] == "history"
    stored = daemon.events()
    assert [e.identifiers[IdentifierKind.email_id] for e in stored] == [
        "ann@example.com",
        "bob@example.com",
    ]
    contact = daemon.contact(stored[0].contact_id or "")
    assert contact is not None and contact.attributes == {"FIRSTNAME": "Ann"}
    assert unprocessed(daemon) == []
    assert daemon.wakeups == []  # nothing for the engine to do


def test_without_the_header_or_with_live_the_engine_gets_the_events(daemon: Daemon) -> None:
    with daemon.client() as client:
        plain = client.post("/v3/events/batch", json={"events": [order("ann@example.com")]})
    with daemon.client(**{"X-Tidings-Mode": "live"}) as client:
        live = client.post("/v3/events", json=order("bob@example.com"))

    assert (plain.status_code, live.status_code) == (202, 204)
    assert "X-Tidings-Mode" not in plain.headers
    assert "X-Tidings-Mode" not in live.headers
    assert len(unprocessed(daemon)) == 2
    assert daemon.wakeups == [1, 1]


def test_a_single_event_can_be_history_too(daemon: Daemon) -> None:
    with daemon.client(**HISTORY) as client:
        answer = client.post("/v3/events", json=order("ann@example.com"))

    assert (answer.status_code, answer.headers["X-Tidings-Mode"]) == (204, "history")
    assert len(daemon.events()) == 1
    assert unprocessed(daemon) == []


def test_a_repeated_history_batch_is_stored_once(daemon: Daemon) -> None:
    batch = {"events": [order("ann@example.com"), order("bob@example.com")]}
    with daemon.client(**HISTORY, **{"Idempotency-Key": "import-1"}) as client:
        first = client.post("/v3/events/batch", json=batch)
        again = client.post("/v3/events/batch", json=batch)
    with daemon.client(**HISTORY) as client:  # no key: the same content within the window
        plain = client.post("/v3/events/batch", json={"events": [order("cy@example.com")]})
        plain_again = client.post("/v3/events/batch", json={"events": [order("cy@example.com")]})

    assert [r.status_code for r in (first, again, plain, plain_again)] == [202] * 4
    assert len(daemon.events()) == 3
    assert unprocessed(daemon) == []


def test_a_history_batch_is_validated_like_any_batch(daemon: Daemon) -> None:
    batch = {"events": [order("ann@example.com"), order("not-an-email")]}
    with daemon.client(**HISTORY) as client:
        answer = client.post("/v3/events/batch", json=batch)

    assert answer.status_code == 400
    assert answer.json()["errors"][0]["eventIndex"] == [1]
    assert daemon.events() == []


def test_a_tracker_key_cannot_write_history(daemon: Daemon) -> None:
    with daemon.client(**{"api-key": "", "ma-key": TRACKER_KEY, **HISTORY}) as client:
        tracked = client.post(
            "/api/v2/trackEvent", json={"email": "ann@example.com", "event": "order_completed"}
        )
    with daemon.client(**{"api-key": TRACKER_KEY, **HISTORY}) as client:
        batch = client.post("/v3/events/batch", json={"events": [order("ann@example.com")]})

    assert (tracked.status_code, tracked.json()) == (
        403,
        {
            "code": "permission_denied",
            "message": "X-Tidings-Mode: history is for api keys on /v3/events;"
            " the tracker adds live events",
        },
    )
    assert (batch.status_code, batch.json()) == (
        401,
        {"code": "unauthorized", "message": "Key not found: the api-key is not valid here"},
    )
    assert daemon.events() == []


def test_an_unknown_mode_is_refused_rather_than_taken_for_live(daemon: Daemon) -> None:
    with daemon.client(**{"X-Tidings-Mode": "histroy"}) as client:
        answer = client.post("/v3/events/batch", json={"events": [order("ann@example.com")]})

    assert (answer.status_code, answer.json()) == (
        400,
        {
            "code": "invalid_parameter",
            "message": "X-Tidings-Mode: expected 'history' or 'live'",
        },
    )
    assert daemon.events() == []
