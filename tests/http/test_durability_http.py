"""Durable before 2xx, with commits shared: group commit over SQLite and PostgreSQL; Unicode
round trip byte for byte; the contact rule when identifiers disagree."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from support.daemon import API_KEY, Daemon
from tidings.adapters.sql.store import SqlStore
from tidings.ports import UnitOfWork


class GatedStore:
    """A store whose first transaction waits for the test to open the gate."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.gate = threading.Event()
        self.first_entered = threading.Event()
        self._first = True

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        if self._first:
            self._first = False
            self.first_entered.set()
            if not self.gate.wait(timeout=60):
                raise RuntimeError("gate never opened")
        with self.store.transaction() as uow:
            yield uow


def _post(url: str, n: int) -> int:
    body = {"event_name": "clicked", "identifiers": {"ext_id": f"visitor-{n % 7}"}}
    body["event_properties"] = {"n": n}
    with httpx.Client(timeout=60) as client:
        return client.post(f"{url}/v3/events", json=body, headers={"api-key": API_KEY}).status_code


def _wait_for(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(6000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition never held")


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_concurrent_requests_share_commits_and_are_durable_when_answered(
    make_daemon: Callable[..., Daemon], request: pytest.FixtureRequest, database: str
) -> None:
    gates: list[GatedStore] = []

    def gated(store: SqlStore) -> GatedStore:
        gates.append(GatedStore(store))
        return gates[0]

    db_url = request.getfixturevalue("postgres_url") if database == "postgres" else None
    daemon = make_daemon(store_wrapper=gated, db_url=db_url)
    n = 40
    with ThreadPoolExecutor(max_workers=n) as pool:
        # The first request's transaction is held open; the others queue behind it.
        first = pool.submit(_post, daemon.url, 0)
        assert gates[0].first_entered.wait(timeout=60)
        rest = [pool.submit(_post, daemon.url, i) for i in range(1, n)]
        _wait_for(lambda: daemon.ingest.writer.pending == n - 1)
        gates[0].gate.set()
        statuses = [first.result(timeout=60)] + [f.result(timeout=60) for f in rest]
    assert statuses == [204] * n
    # Every answered event is committed: a new connection sees all of them
    assert sorted(e.properties["n"] for e in daemon.events()) == list(range(n))
    # ... and they took two commits, not forty
    assert daemon.ingest.writer.commits == 2
    assert daemon.ingest.writer.items_written == n


UNICODE = {
    "emoji": "\U0001f600\U0001f44d\U0001f3fd\U0001f1eb\U0001f1f7 \U0001f469\u200d\U0001f4bb",
    "rtl": "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202bembedded\u202c",
    "combining": "e\u0301 (decomposed) vs \u00e9 (composed), Z\u0351\u0364\u0350",
    "cjk": "\u6f22\u5b57\u304b\u306a",
    "astral": "\U00010348\U0001d11e",
    "\u00e9t\u00e9 \U0001f31e": "keys too",
}


def test_unicode_round_trips_byte_for_byte(daemon: Daemon) -> None:
    body = {
        "event_name": "unicode_test",
        "identifiers": {"ext_id": "\u05de\u05e9\u05ea\u05de\u05e9-\U0001f600"},
        "contact_properties": {"NAME": UNICODE["combining"]},
        "event_properties": UNICODE,
    }
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    with daemon.client() as client:
        assert client.post("/v3/events", content=raw).status_code == 204
        listed = client.get("/v3/events")
    [item] = listed.json()["events"]
    for key, value in UNICODE.items():
        # the exact UTF-8 bytes sent come back (no normalisation, no escaping)
        assert value.encode("utf-8") in listed.content
        assert item["event_properties"][key].encode("utf-8") == value.encode("utf-8")
    assert item["identifiers"]["ext_id"] == body["identifiers"]["ext_id"]  # type: ignore[index]
    assert item["contact_properties"] == {"NAME": UNICODE["combining"]}
    [event] = daemon.events()
    assert event.properties == UNICODE


def _post_event(client: httpx.Client, identifiers: dict[str, Any], name: str = "seen") -> None:
    response = client.post("/v3/events", json={"event_name": name, "identifiers": identifiers})
    assert response.status_code == 204


def test_identifiers_of_two_contacts_resolve_by_priority_without_merging(
    daemon: Daemon,
) -> None:
    with daemon.client() as client:
        _post_event(client, {"email_id": "ann@example.org"})
        _post_event(client, {"ext_id": "u-2", "phone_id": "+33 6 00 00 00 02"})
        # email_id (priority 2) belongs to Ann, ext_id (priority 3) to the other contact
        _post_event(client, {"ext_id": "u-2", "email_id": "ann@example.org"}, name="conflict")
        listed = client.get("/v3/events", params={"event_name": "conflict"}).json()
    ann, other, conflict = daemon.events()
    assert conflict.contact_id == ann.contact_id != other.contact_id
    assert conflict.conflicts == {"ext_id": f"belongs to contact {other.contact_id}"}
    assert listed["events"][0]["conflicts"] == {"ext_id": f"belongs to contact {other.contact_id}"}
    # Nothing moved: each contact keeps its own identifiers
    ann_contact = daemon.contact(ann.contact_id or "")
    other_contact = daemon.contact(other.contact_id or "")
    assert ann_contact is not None and other_contact is not None
    assert set(ann_contact.identifiers.values()) == {"ann@example.org"}
    assert set(other_contact.identifiers.values()) == {"u-2", "+33600000002"}
    assert daemon.contacts_count() == 2


def test_new_identifiers_attach_to_the_found_contact(daemon: Daemon) -> None:
    with daemon.client() as client:
        _post_event(client, {"email_id": "bo@example.org"})
        _post_event(client, {"email_id": "bo@example.org", "ext_id": "bo-1"})
        _post_event(client, {"ext_id": "bo-1"})
    events = daemon.events()
    assert len({e.contact_id for e in events}) == 1
    contact = daemon.contact(events[0].contact_id or "")
    assert contact is not None
    assert {k.value: v for k, v in contact.identifiers.items()} == {
        "email_id": "bo@example.org",
        "ext_id": "bo-1",
    }


def test_contact_properties_keep_their_json_types(daemon: Daemon) -> None:
    props = {"S": "1", "I": 1, "F": 1.5, "B": True, "Z": 0, "NONE": None}
    with daemon.client() as client:
        response = client.post(
            "/v3/events",
            json={
                "event_name": "typed",
                "identifiers": {"ext_id": "t"},
                "contact_properties": props,
            },
        )
        assert response.status_code == 204
        client.post(
            "/v3/events",
            json={
                "event_name": "typed",
                "identifiers": {"ext_id": "t"},
                "contact_properties": {"I": True},
            },
        )
    contact = daemon.contact(daemon.events()[0].contact_id or "")
    assert contact is not None
    assert contact.attributes == {"S": "1", "I": True, "F": 1.5, "B": True, "Z": 0}
    assert type(contact.attributes["Z"]) is int
