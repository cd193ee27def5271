"""Property: whatever arrives on an ingest route (arbitrary JSON, near-valid events, raw bytes),
the answer is never a 5xx, nothing is half-written, and the daemon keeps working."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.daemon import TRACKER_KEY, Daemon

ROUTES = [
    "/v3/events",
    "/v3/events/batch",
    "/api/v2/identify",
    "/api/v2/trackEvent",
    "/api/v2/trackPage",
    "/api/v2/trackLink",
]
FIELDS = [
    "event_name",
    "identifiers",
    "contact_properties",
    "event_date",
    "event_properties",
    "object",
    "events",
    "email",
    "event",
    "properties",
    "eventdata",
    "attributes",
    "page",
    "link",
]
IDENTIFIERS = ["contact_id", "email_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["a@b.co", "+33 6 12", "2024-05-01T10:00:00+02:00", "9999-12-31", "x_y"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10) | st.sampled_from(FIELDS), children, max_size=4)
    ),
    max_leaves=15,
)
near_valid = st.fixed_dictionaries(
    {
        "event_name": st.sampled_from(["cart_updated", "x"]) | scalars,
        "identifiers": st.dictionaries(
            st.sampled_from([*IDENTIFIERS, "user_id"]), scalars | json_values, max_size=3
        ),
    },
    optional={name: json_values for name in FIELDS if name not in ("event_name", "identifiers")},
)
bodies = (
    json_values | near_valid | st.builds(lambda e: {"events": e}, st.lists(near_valid, max_size=4))
)


@pytest.fixture
def client(daemon: Daemon) -> Iterator[httpx.Client]:
    with daemon.client(**{"ma-key": TRACKER_KEY}) as http:
        yield http


def _count(client: httpx.Client) -> int:
    response = client.get("/v3/events", params={"limit": 1})
    assert response.status_code == 200
    count: int = response.json()["count"]
    return count


def _check(client: httpx.Client, route: str, content: bytes, items: int) -> None:
    before = _count(client)
    response = client.post(route, content=content, headers={"content-type": "application/json"})
    after = _count(client)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) >= {"code", "message"}
        assert after == before, f"{response.status_code} yet {after - before} events stored"
    else:
        # 2xx: stored whole (or recognised as a duplicate), never partly
        assert response.status_code in (202, 204)
        assert after - before in ((0, items) if route.endswith("batch") else (0, 1))


def _items(body: Any) -> int:
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return len(body["events"])
    return 1


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_arbitrary_json_never_5xx_never_partial(
    client: httpx.Client, route: str, body: Any
) -> None:
    content = json.dumps(body).encode()  # NaN/Infinity included: they must be refused
    _check(client, route, content, _items(body))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(route=st.sampled_from(ROUTES), content=st.binary(max_size=512))
def test_arbitrary_bytes_never_5xx_never_partial(
    client: httpx.Client, route: str, content: bytes
) -> None:
    _check(client, route, content, _items(None))


def test_daemon_still_healthy_after_garbage(client: httpx.Client, daemon: Daemon) -> None:
    for garbage in (b"\x00" * 100, b"{" * 5000, b'{"events": [' + b"[" * 3000):
        assert client.post("/v3/events/batch", content=garbage).status_code == 400
    ok = client.post(
        "/v3/events", json={"event_name": "still_here", "identifiers": {"ext_id": "1"}}
    )
    assert ok.status_code == 204
    assert [e.name for e in daemon.events()] == ["still_here"]
