"""Consent over HTTP: the unsubscribe link (page + RFC 8058 one-click) and SMS STOP replies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tidings.adapters.clock import ManualClock
from tidings.adapters.http.app import HttpDeps, create_app
from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.http.consent import consent_router
from tidings.adapters.memory import MemoryStore
from tidings.model.contacts import Channel, Contact
from tidings.model.events import IdentifierKind
from tidings.model.trace import TraceEntry, TraceKind
from tidings.service.consent import ConsentTokens
from tidings.service.ingest import IngestService

T0 = datetime(2030, 5, 6, 7, 8, tzinfo=UTC)
API_KEY = "consent-test-api-key"


class AppClient:
    """Requests to the ASGI app in-process, one event loop per request."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def get(self, url: str, **options: Any) -> httpx.Response:
        return asyncio.run(self._send("GET", url, **options))

    def post(self, url: str, **options: Any) -> httpx.Response:
        return asyncio.run(self._send("POST", url, **options))

    async def _send(self, method: str, url: str, **options: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, url, **options)


@dataclass
class Site:
    client: AppClient
    store: MemoryStore
    tokens: ConsentTokens

    def contact(self, contact_id: str = "c1") -> Contact:
        with self.store.transaction() as uow:
            found = uow.get_contact(contact_id)
        assert found is not None
        return found

    def trace(self, contact_id: str = "c1") -> list[TraceEntry]:
        with self.store.transaction() as uow:
            return uow.trace_for_contact(contact_id)


@pytest.fixture
def site() -> Site:
    store, clock = MemoryStore(), ManualClock(T0)
    with store.transaction() as uow:
        uow.save_contact(
            Contact(
                id="c1",
                identifiers={
                    IdentifierKind.email_id: "ann@example.com",
                    IdentifierKind.phone_id: "+33612345678",
                },
                created_at=T0,
                updated_at=T0,
            )
        )
    tokens = ConsentTokens("a-secret-for-tests")
    deps = HttpDeps(
        store=store,
        clock=clock,
        ingest=IngestService(store, clock),
        keys=KeyChecker(api_keys=[API_KEY]),
    )
    app = create_app(deps, extra_routers=[consent_router(tokens, store, clock)])
    return Site(AppClient(app), store, tokens)


def test_the_link_shows_a_confirmation_page_and_changes_nothing_by_itself(site: Site) -> None:
    token = site.tokens.create("c1", Channel.email)

    page = site.client.get(f"/u/{token}")

    assert page.status_code == 200
    assert "Stop receiving emails" in page.text
    assert f'action="/u/{token}"' in page.text
    assert site.contact().unsubscribed == frozenset()
    assert site.trace() == []


def test_one_click_unsubscribes_the_channel_once_and_traces_it(site: Site) -> None:
    token = site.tokens.create("c1", Channel.email)
    one_click = {"content-type": "application/x-www-form-urlencoded"}

    first = site.client.post(f"/u/{token}", content="List-Unsubscribe=One-Click", headers=one_click)
    again = site.client.post(f"/u/{token}", content="List-Unsubscribe=One-Click", headers=one_click)

    assert (first.status_code, again.status_code) == (200, 200)
    assert "will not receive emails" in first.text
    assert site.contact().unsubscribed == frozenset({Channel.email})
    [entry] = site.trace()
    assert (entry.kind, entry.message) == (
        TraceKind.update_contact,
        "unsubscribed from email (link)",
    )
    assert entry.at == T0


@pytest.mark.parametrize(
    "token",
    [
        "email.YzE.AAAAAAAAAAAAAAAAAAAAAA",  # right shape, wrong signature
        "garbage",
        "sms.YzE",
    ],
)
def test_a_forged_or_broken_link_is_refused_and_unsubscribes_nobody(site: Site, token: str) -> None:
    page = site.client.get(f"/u/{token}")
    posted = site.client.post(f"/u/{token}")

    assert (page.status_code, posted.status_code) == (404, 404)
    assert "not valid" in posted.text
    assert site.contact().unsubscribed == frozenset()


def test_a_link_for_one_channel_leaves_the_other_alone(site: Site) -> None:
    site.client.post(f"/u/{site.tokens.create('c1', Channel.sms)}")

    assert site.contact().unsubscribed == frozenset({Channel.sms})


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"from": "+33 6 12 34 56 78", "text": "STOP"}, "unsubscribed"),
        ({"from": "+33612345678", "text": "  arrêt svp"}, "unsubscribed"),
        ({"from": "33612345678", "text": "Unsubscribe"}, "unsubscribed"),  # carrier dropped the +
        ({"to": "+33612345678", "reply": "Stop"}, "unsubscribed"),  # Brevo's SMS webhook names
        ({"to": "+33612345678", "msg_status": "unsubscribed"}, "unsubscribed"),
        ({"from": "+33612345678", "text": "Please don't stop!"}, "ignored"),
        ({"from": "+33700000000", "text": "STOP"}, "unknown_contact"),
    ],
)
def test_an_sms_reply_stop_unsubscribes_that_number_from_sms(
    site: Site, body: dict[str, str], status: str
) -> None:
    answer = site.client.post("/inbound/sms", json=body, headers={"api-key": API_KEY})

    assert answer.status_code == 200
    assert answer.json()["status"] == status
    expected = frozenset({Channel.sms}) if status == "unsubscribed" else frozenset()
    assert site.contact().unsubscribed == expected
    assert len(site.trace()) == (1 if status == "unsubscribed" else 0)


def test_an_sms_reply_may_come_as_a_form(site: Site) -> None:
    answer = site.client.post(
        "/inbound/sms",
        content="From=%2B33612345678&Body=STOP",
        headers={"api-key": API_KEY, "content-type": "application/x-www-form-urlencoded"},
    )

    assert answer.json() == {"status": "unsubscribed"}
    [entry] = site.trace()
    assert entry.message == "unsubscribed from sms (sms reply)"


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        ({}, {"from": "+33612345678", "text": "STOP"}, 401, "unauthorized"),
        ({"api-key": "wrong"}, {"from": "+33612345678", "text": "STOP"}, 401, "unauthorized"),
        ({"api-key": API_KEY}, {"text": "STOP"}, 400, "missing_parameter"),
    ],
)
def test_inbound_sms_needs_an_api_key_and_a_number(
    site: Site, headers: dict[str, str], body: dict[str, str], status: int, code: str
) -> None:
    answer = site.client.post("/inbound/sms", json=body, headers=headers)

    assert answer.status_code == status
    assert answer.json()["code"] == code
    assert site.contact().unsubscribed == frozenset()
