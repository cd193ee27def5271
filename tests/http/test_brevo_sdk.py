"""The official Brevo SDKs against a real daemon: 5.1.0 (`Brevo(...).event`) and 1.2.0
(`brevo_python.EventsApi`).

Both are distributions named brevo-python, so 1.x cannot sit in the venv beside 5.x:
scripts/setup installs it in `.venv/brevo1` (module `brevo_python`, 5.x's is `brevo`), and
the 1.x tests import it from there; without it they skip, or fail when `CI` is set.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from brevo import Brevo
from brevo.event import (
    CreateBatchEventsRequestEventsItem,
    CreateBatchEventsRequestEventsItemIdentifiers,
    CreateEventRequestIdentifiers,
    CreateEventRequestObject,
    CreateEventRequestObjectIdentifiers,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from support.daemon import API_KEY, T0, Daemon
from support.required import missing
from tidings.model.events import IdentifierKind


def test_sdk_create_event_stores_every_field(daemon: Daemon, brevo_client: Brevo) -> None:
    # Given an event with every field Brevo's API has
    occurred = datetime(2024, 4, 30, 18, 15, 7, tzinfo=timezone(timedelta(hours=2)))
    brevo_client.event.create_event(
        event_name="order_completed",
        identifiers=CreateEventRequestIdentifiers(
            email_id="Jane.Doe@Example.org", ext_id="user-42", phone_id="+33 6 12 34 56 78"
        ),
        contact_properties={"FIRSTNAME": "Jane", "AGE": 37, "VIP": True},
        event_date=occurred,
        event_properties={
            "order_id": "A-1001",
            "total": 129,
            "items": [{"sku": "shoe-9", "qty": 2, "tags": ["red", "sale"]}],
            "paid": True,
        },
        object=CreateEventRequestObject(
            type="order", identifiers=CreateEventRequestObjectIdentifiers(ext_id="A-1001")
        ),
    )
    # Then it is committed with every field, on a contact created for it
    [event] = daemon.events()
    assert event.name == "order_completed"
    assert event.identifiers == {
        IdentifierKind.email_id: "jane.doe@example.org",
        IdentifierKind.ext_id: "user-42",
        IdentifierKind.phone_id: "+33612345678",
    }
    assert event.occurred_at == occurred
    assert event.received_at == T0
    assert event.properties == {
        "order_id": "A-1001",
        "total": 129,
        "items": [{"sku": "shoe-9", "qty": 2, "tags": ["red", "sale"]}],
        "paid": True,
    }
    assert event.contact_properties == {"FIRSTNAME": "Jane", "AGE": 37, "VIP": True}
    assert event.object == {"type": "order", "identifiers": {"ext_id": "A-1001"}}
    assert event.source == "api"
    assert event.contact_id is not None
    contact = daemon.contact(event.contact_id)
    assert contact is not None
    assert contact.attributes == {"FIRSTNAME": "Jane", "AGE": 37, "VIP": True}
    assert contact.identifiers[IdentifierKind.email_id] == "jane.doe@example.org"
    # And listed back by the SDK with the same data
    listed = brevo_client.event.get_events()
    assert listed.count == 1
    [item] = listed.events or []
    assert item.event_name == "order_completed"
    assert item.contact_id == int(event.contact_id)
    assert item.event_date == occurred
    assert item.event_properties == event.properties
    assert item.contact_properties == event.contact_properties
    assert item.object_type == "order"


def test_sdk_contact_id_identifier_reaches_the_same_contact(
    daemon: Daemon, brevo_client: Brevo
) -> None:
    brevo_client.event.create_event(
        event_name="signed_up", identifiers=CreateEventRequestIdentifiers(email_id="a@b.org")
    )
    contact_id = int(daemon.events()[0].contact_id or 0)
    brevo_client.event.create_event(
        event_name="logged_in", identifiers=CreateEventRequestIdentifiers(contact_id=contact_id)
    )
    assert [e.contact_id for e in daemon.events()] == [str(contact_id)] * 2


def _batch_item(n: int, **extra: Any) -> CreateBatchEventsRequestEventsItem:
    return CreateBatchEventsRequestEventsItem(
        event_name="page_viewed",
        identifiers=CreateBatchEventsRequestEventsItemIdentifiers(ext_id=f"visitor-{n}"),
        event_properties={"n": n},
        **extra,
    )


def test_sdk_batch_is_accepted_stored_and_listed_with_filters(
    daemon: Daemon, brevo_client: Brevo
) -> None:
    dates = [(T0 - timedelta(days=d)).isoformat() for d in range(5)]
    accepted = brevo_client.event.create_batch_events(
        events=[_batch_item(n, event_date=dates[n]) for n in range(5)]
        + [
            CreateBatchEventsRequestEventsItem(
                event_name="cart_updated",
                identifiers=CreateBatchEventsRequestEventsItemIdentifiers(ext_id="visitor-0"),
                contact_properties={"CART": 2},
            )
        ]
    )
    assert (accepted.message, accepted.count) == ("Batch accepted", 6)
    stored = daemon.events()
    assert len(stored) == 6
    # Filters: names (repeatable), contact, dates, paging; newest event date first
    page = brevo_client.event.get_events(event_name="page_viewed", limit=2, offset=1)
    assert page.count == 5
    assert [e.event_properties for e in page.events or []] == [{"n": 1}, {"n": 2}]
    visitor0 = stored[0].contact_id
    mine = brevo_client.event.get_events(contact_id=int(visitor0 or 0))
    assert sorted(e.event_name for e in mine.events or []) == ["cart_updated", "page_viewed"]
    window = brevo_client.event.get_events(
        start_date=(T0 - timedelta(days=3)).date().isoformat(),
        end_date=(T0 - timedelta(days=1)).date().isoformat(),
    )
    assert sorted(e.event_properties["n"] for e in window.events or [] if e.event_properties) == [
        1,
        2,
        3,
    ]
    both = brevo_client.event.get_events(event_name=["page_viewed", "cart_updated"])
    assert both.count == 6


@pytest.fixture(scope="module")
def brevo_1x() -> ModuleType:
    """The Brevo SDK 1.x (`brevo_python`), which scripts/setup installs in `.venv/brevo1`."""
    folder = Path(sys.prefix) / "brevo1"
    if not (folder / "brevo_python").is_dir():
        missing(f"the Brevo SDK 1.x is not installed in {folder}: run bash scripts/setup")
    if str(folder) not in sys.path:
        # Appended, not prepended: its own copies of urllib3, six… must not shadow the venv's.
        sys.path.append(str(folder))
    return importlib.import_module("brevo_python")


def _events_api(brevo_1x: ModuleType, daemon: Daemon) -> Any:
    configuration = brevo_1x.Configuration()
    configuration.host = daemon.v3
    configuration.api_key["api-key"] = API_KEY
    return brevo_1x.EventsApi(brevo_1x.ApiClient(configuration))


def test_legacy_1x_create_event_stores_every_field(daemon: Daemon, brevo_1x: ModuleType) -> None:
    # Given brevo-python 1.x's EventsApi, over a real socket
    api = _events_api(brevo_1x, daemon)
    api.create_event(
        brevo_1x.Event(
            event_name="video_played",
            event_date="2024-04-30T10:00:00+01:00",
            identifiers=brevo_1x.EventIdentifiers(email_id="Ren\u00e9e@Example.org", ext_id="u-7"),
            contact_properties={"FIRSTNAME": "Ren\u00e9e", "AGE": 41},
            event_properties={"title": "Caf\u00e9 \U0001f3ac", "seconds": 42.5, "tags": ["a"]},
        )
    )
    # Then it is committed with every field
    [event] = daemon.events()
    assert event.name == "video_played"
    assert event.occurred_at == datetime(2024, 4, 30, 9, 0, tzinfo=UTC)
    assert event.identifiers == {
        IdentifierKind.email_id: "ren\u00e9e@example.org",
        IdentifierKind.ext_id: "u-7",
    }
    assert event.properties == {"title": "Caf\u00e9 \U0001f3ac", "seconds": 42.5, "tags": ["a"]}
    assert event.contact_properties == {"FIRSTNAME": "Ren\u00e9e", "AGE": 41}
    assert event.source == "api"


def test_legacy_1x_bad_event_name_is_refused_with_brevos_error_body(
    daemon: Daemon, brevo_1x: ModuleType
) -> None:
    api = _events_api(brevo_1x, daemon)
    with pytest.raises(brevo_1x.rest.ApiException) as refused:
        api.create_event(
            brevo_1x.Event(
                event_name="video played!",
                identifiers=brevo_1x.EventIdentifiers(email_id="a@b.org"),
            )
        )
    assert refused.value.status == 400
    assert json.loads(refused.value.body) == {
        "code": "invalid_parameter",
        "message": "event_name: only letters, digits, '-' and '_' are allowed",
    }
    assert daemon.events() == []


class FailAfterCommitOnce:
    """Answers the first matching request with `status` *after* the app handled it (the event
    is committed, the answer is lost), as a proxy timing out would."""

    def __init__(self, app: ASGIApp, status: int, path: str) -> None:
        self.app = app
        self.status = status
        self.path = path
        self.failed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or self.failed:
            await self.app(scope, receive, send)
            return
        self.failed += 1

        async def swallow(message: Message) -> None:
            return None

        await self.app(scope, receive, swallow)
        body = json.dumps({"code": "injected", "message": "lost answer"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("status", [500, 503, 429])
def test_sdk_retry_after_a_lost_answer_is_stored_once(
    make_daemon: Callable[..., Daemon], status: int
) -> None:
    wrappers: list[FailAfterCommitOnce] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        wrappers.append(FailAfterCommitOnce(app, status, "/v3/events"))
        return wrappers[0]

    daemon = make_daemon(wrap=wrap)
    with httpx.Client(timeout=30) as http:
        client = Brevo(api_key=API_KEY, base_url=daemon.v3, httpx_client=http)
        # The SDK retries 5xx/429 with the same body and no idempotency key
        client.event.create_event(
            event_name="cart_updated",
            identifiers=CreateEventRequestIdentifiers(email_id="retry@example.org"),
            event_properties={"total": 10},
        )
    assert wrappers[0].failed == 1
    assert [e.name for e in daemon.events()] == ["cart_updated"]


def test_sdk_batch_retry_after_a_lost_answer_is_stored_once(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon(wrap=lambda app: FailAfterCommitOnce(app, 503, "/v3/events/batch"))
    with httpx.Client(timeout=30) as http:
        client = Brevo(api_key=API_KEY, base_url=daemon.v3, httpx_client=http)
        accepted = client.event.create_batch_events(events=[_batch_item(n) for n in range(3)])
    assert accepted.count == 3
    assert sorted(e.properties["n"] for e in daemon.events()) == [0, 1, 2]
