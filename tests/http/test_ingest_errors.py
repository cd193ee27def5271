"""Every way a request can be refused: status, Brevo's `{"code", "message"}` body naming the
field, and nothing stored (no event, no contact)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest

from support.daemon import API_KEY, T0, TRACKER_KEY, Daemon, new_api_key
from tidings.adapters.http.app import HttpLimits
from tidings.model.keys import KeyKind

EMAIL = {"email_id": "jo@example.org"}


def event(**fields: object) -> bytes:
    """A valid event body with some fields replaced (a value of ... drops the field)."""
    body: dict[str, object] = {"event_name": "cart_updated", "identifiers": EMAIL}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


BAD_EVENTS = [
    (
        "malformed",
        b'{"event_name": "x",',
        400,
        "invalid_parameter",
        "body: malformed JSON: Expecting property name enclosed in double quotes at line 1",
    ),
    ("empty", b"", 400, "missing_parameter", "body: empty body, expected a JSON object"),
    ("array", b"[]", 400, "invalid_parameter", "body: expected an object, got an array"),
    (
        "not utf-8",
        b'{"event_name": "\xff"}',
        400,
        "invalid_parameter",
        "body: not valid UTF-8 (invalid start byte)",
    ),
    (
        "NaN",
        b'{"event_name": NaN}',
        400,
        "invalid_parameter",
        "body: malformed JSON: NaN is not a JSON number",
    ),
    (
        "infinity",
        event(event_properties=None)[:-1] + b', "x": 1e999}',
        400,
        "invalid_parameter",
        "body: malformed JSON: 1e999 is out of range for a number",
    ),
    ("no event_name", event(event_name=...), 400, "missing_parameter", "event_name: is required"),
    (
        "null event_name",
        event(event_name=None),
        400,
        "missing_parameter",
        "event_name: is required",
    ),
    (
        "number event_name",
        event(event_name=7),
        400,
        "invalid_parameter",
        "event_name: expected a string, got a number",
    ),
    (
        "spaced event_name",
        event(event_name="cart updated"),
        400,
        "invalid_parameter",
        "event_name: only letters, digits, '-' and '_' are allowed",
    ),
    (
        "long event_name",
        event(event_name="x" * 256),
        400,
        "invalid_parameter",
        "event_name: longer than 255 characters",
    ),
    (
        "unknown field",
        event(event_type="x"),
        400,
        "invalid_parameter",
        "unknown field(s) 'event_type'; expected event_name, identifiers, contact_properties,"
        " event_date, event_properties, object",
    ),
    (
        "no identifiers",
        event(identifiers=...),
        400,
        "missing_parameter",
        "identifiers: is required",
    ),
    (
        "null identifiers",
        event(identifiers={"email_id": None}),
        400,
        "missing_parameter",
        "identifiers: at least one identifier is required",
    ),
    (
        "unknown identifier",
        event(identifiers={"user_id": "1", "email_id": "a@b.co"}),
        400,
        "invalid_parameter",
        "identifiers: unknown identifier(s) 'user_id'; expected one of contact_id, email_id,"
        " ext_id, landline_number_id, phone_id, whatsapp_id",
    ),
    (
        "bad email",
        event(identifiers={"email_id": "jo.example.org"}),
        400,
        "invalid_parameter",
        "identifiers.email_id: expected an email address",
    ),
    (
        "bad phone",
        event(identifiers={"phone_id": "call me"}),
        400,
        "invalid_parameter",
        "identifiers.phone_id: expected a phone number",
    ),
    (
        "bad contact_id",
        event(identifiers={"contact_id": "seven"}),
        400,
        "invalid_parameter",
        "identifiers.contact_id: expected a positive integer contact id",
    ),
    (
        "unknown contact_id",
        event(identifiers={"contact_id": 999}),
        400,
        "invalid_parameter",
        "identifiers.contact_id: no contact with id 999",
    ),
    (
        "nested contact_properties",
        event(contact_properties={"ADDRESS": {"city": "Lyon"}}),
        400,
        "invalid_parameter",
        "contact_properties.ADDRESS: expected a string, number or boolean, got an object",
    ),
    (
        "list contact_properties",
        event(contact_properties=["a"]),
        400,
        "invalid_parameter",
        "contact_properties: expected an object, got an array",
    ),
    (
        "bad event_date",
        event(event_date="yesterday"),
        400,
        "invalid_parameter",
        "event_date: expected an ISO 8601 date-time, got 'yesterday'",
    ),
    (
        "future event_date",
        event(event_date=(T0 + timedelta(days=2)).isoformat()),
        400,
        "invalid_parameter",
        "event_date: '2024-05-03T09:00:00+00:00' is more than 1 day in the future",
    ),
    (
        "list event_properties",
        event(event_properties=[1, 2]),
        400,
        "invalid_parameter",
        "event_properties: expected an object, got an array",
    ),
    (
        "big event_properties",
        event(event_properties={"blob": "x" * 51_200}),
        400,
        "invalid_parameter",
        "event_properties: 51211 bytes, more than the 50 KB allowed",
    ),
    (
        "deep event_properties",
        event(event_properties=nested(17)),
        400,
        "invalid_parameter",
        "event_properties" + ".a" * 16 + ": nested deeper than 16 levels",
    ),
    (
        "NUL in a property",
        event(event_properties={"note": "a\u0000b"}),
        400,
        "invalid_parameter",
        "event_properties.note: contains a NUL character, which cannot be stored",
    ),
    (
        "lone surrogate",
        b'{"event_name": "x", "identifiers": {"ext_id": "\\ud800"}}',
        400,
        "invalid_parameter",
        "identifiers.ext_id: contains a lone surrogate (invalid Unicode)",
    ),
    (
        "bad object",
        event(object="order"),
        400,
        "invalid_parameter",
        "object: expected an object, got a string",
    ),
]


@pytest.fixture
def http(daemon: Daemon) -> Iterator[httpx.Client]:
    with daemon.client() as client:
        yield client


def assert_nothing_stored(daemon: Daemon) -> None:
    assert daemon.events() == []


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [case[1:] for case in BAD_EVENTS],
    ids=[case[0] for case in BAD_EVENTS],
)
def test_bad_event_is_refused_naming_the_field(
    daemon: Daemon, http: httpx.Client, body: bytes, status: int, code: str, message: str
) -> None:
    response = http.post("/v3/events", content=body, headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (status, {"code": code, "message": message})
    assert_nothing_stored(daemon)


def test_idempotency_key_too_long(daemon: Daemon, http: httpx.Client) -> None:
    response = http.post("/v3/events", content=event(), headers={"Idempotency-Key": "k" * 256})
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_parameter",
        "message": "Idempotency-Key: must be 1-255 characters",
    }
    assert_nothing_stored(daemon)


def test_batch_with_invalid_items_is_refused_whole(daemon: Daemon, http: httpx.Client) -> None:
    good = json.loads(event())
    body = {"events": [good, {"event_name": "x y", "identifiers": EMAIL}, good, 42]}
    response = http.post("/v3/events/batch", json=body)
    assert response.status_code == 400
    assert response.json() == {
        "code": "invalid_parameter",
        "message": "2 invalid event(s): events[1].event_name: only letters, digits, '-' and '_'"
        " are allowed; events[3]: expected an object, got a number",
        "errors": [
            {
                "eventIndex": [1],
                "field": "events[1].event_name",
                "code": "invalid_parameter",
                "message": "events[1].event_name: only letters, digits, '-' and '_' are allowed",
            },
            {
                "eventIndex": [3],
                "field": "events[3]",
                "code": "invalid_parameter",
                "message": "events[3]: expected an object, got a number",
            },
        ],
    }
    assert_nothing_stored(daemon)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({}, "missing_parameter", "events: is required"),
        ({"events": None}, "missing_parameter", "events: is required"),
        ({"events": {}}, "invalid_parameter", "events: expected an array, got an object"),
        ({"events": []}, "missing_parameter", "events: must contain at least one event"),
        (
            {"events": [json.loads(event())] * 1001},
            "invalid_parameter",
            "events: 1001 events, more than the 1000 allowed",
        ),
        (
            {"events": [json.loads(event(identifiers={"contact_id": 5}))]},
            "invalid_parameter",
            "1 invalid event(s): events[0].identifiers.contact_id: no contact with id 5",
        ),
    ],
    ids=["no events", "null events", "object events", "empty", "too many", "unknown contact"],
)
def test_bad_batch_shape(
    daemon: Daemon, http: httpx.Client, body: object, code: str, message: str
) -> None:
    response = http.post("/v3/events/batch", json=body)
    assert response.status_code == 400
    assert {k: v for k, v in response.json().items() if k != "errors"} == {
        "code": code,
        "message": message,
    }
    assert_nothing_stored(daemon)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"api-key": ""}, "api-key header is missing"),
        ({"api-key": "not-a-key"}, "Key not found: the api-key is not valid here"),
        ({"api-key": TRACKER_KEY}, "Key not found: the api-key is not valid here"),
    ],
    ids=["missing", "wrong", "tracker key on /v3"],
)
@pytest.mark.parametrize("route", ["POST /v3/events", "POST /v3/events/batch", "GET /v3/events"])
def test_unauthorized(daemon: Daemon, headers: dict[str, str], message: str, route: str) -> None:
    method, path = route.split()
    body = {"events": [json.loads(event())]} if path.endswith("batch") else json.loads(event())
    with daemon.client(**headers) as client:
        response = client.request(method, path, json=body if method == "POST" else None)
    assert (response.status_code, response.json()) == (
        401,
        {"code": "unauthorized", "message": message},
    )
    assert_nothing_stored(daemon)


def test_revoked_database_key_is_refused(daemon: Daemon) -> None:
    secret = new_api_key(daemon)
    with daemon.client(**{"api-key": secret}) as client:
        assert client.post("/v3/events", content=event()).status_code == 204
        key_id = daemon.keys.list()[0].id
        daemon.keys.revoke(key_id, now=T0)
        daemon.clock.advance(timedelta(seconds=6))  # past the key cache
        response = client.post("/v3/events", content=event(event_name="again"))
    assert response.status_code == 401
    assert [e.name for e in daemon.events()] == ["cart_updated"]


def test_tracker_database_key_cannot_use_v3(daemon: Daemon) -> None:
    secret = new_api_key(daemon, KeyKind.tracker)
    with daemon.client(**{"api-key": secret}) as client:
        assert client.get("/v3/events").status_code == 401


def test_body_over_the_limit_is_413(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(limits=HttpLimits(max_body_bytes=2048, max_batch_body_bytes=4096))
    big = event(event_properties={"blob": "x" * 3000})
    with daemon.client() as client:
        single = client.post("/v3/events", content=big)
        batch_ok = client.post("/v3/events/batch", content=b'{"events": [' + big + b"]}")
        batch_big = client.post(
            "/v3/events/batch", content=b'{"events": [' + b",".join([big, big]) + b"]}"
        )
    assert (single.status_code, single.json()) == (
        413,
        {
            "code": "request_entity_too_large",
            "message": "body: larger than the 2048 bytes allowed for /v3/events",
        },
    )
    assert batch_ok.status_code == 202
    assert batch_big.status_code == 413
    assert batch_big.json()["message"] == (
        "body: larger than the 4096 bytes allowed for /v3/events/batch"
    )
    assert len(daemon.events()) == 1


def test_streamed_body_without_length_over_the_limit_is_413(
    make_daemon: Callable[..., Daemon],
) -> None:
    daemon = make_daemon(limits=HttpLimits(max_body_bytes=1024))

    def chunks() -> Iterator[bytes]:
        yield event(event_properties={"blob": "y" * 600})[:-1]
        yield b', "more": "' + b"z" * 600 + b'"}'

    with daemon.client() as client:
        response = client.post("/v3/events", content=chunks())
    assert response.status_code == 413
    assert response.json()["code"] == "request_entity_too_large"
    assert_nothing_stored(daemon)


def test_rate_limit_answers_429_with_brevo_headers(make_daemon: Callable[..., Daemon]) -> None:
    daemon = make_daemon(limits=HttpLimits(rate_limit_per_minute=2))
    with daemon.client() as client:
        first = client.post("/v3/events", content=event(event_name="a"))
        second = client.post("/v3/events", content=event(event_name="b"))
        third = client.post("/v3/events", content=event(event_name="c"))
        daemon.clock.advance(timedelta(seconds=30))  # one token back (2 per minute)
        fourth = client.post("/v3/events", content=event(event_name="d"))
    assert [r.status_code for r in (first, second, third, fourth)] == [204, 204, 429, 204]
    assert first.headers["x-sib-ratelimit-limit"] == "2"
    assert first.headers["x-sib-ratelimit-remaining"] == "1"
    assert third.json() == {
        "code": "too_many_requests",
        "message": "rate limit of 2 requests per minute reached; retry in 30s",
    }
    assert third.headers["Retry-After"] == "30"
    assert third.headers["x-sib-ratelimit-remaining"] == "0"
    assert third.headers["x-sib-ratelimit-reset"] == "60"
    assert [e.name for e in daemon.events()] == ["a", "b", "d"]


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("limit=0", "invalid_parameter", "limit: Input should be greater than or equal to 1"),
        ("offset=-1", "invalid_parameter", "offset: Input should be greater than or equal to 0"),
        (
            "limit=ten",
            "invalid_parameter",
            "limit: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "startDate=soon",
            "invalid_parameter",
            "startDate: expected YYYY-MM-DD or an RFC 3339 time",
        ),
        (
            "startDate=2024-05-02&endDate=2024-05-01",
            "invalid_parameter",
            "startDate: must not be after endDate",
        ),
        ("contact_id=abc", "invalid_parameter", "contact_id: expected a positive integer"),
        (
            "contact_id=1&contact_id=2",
            "invalid_parameter",
            "contact_id: give at most one contact id",
        ),
        (
            "object_type=order",
            "invalid_parameter",
            "object_type: filtering by object type is not supported",
        ),
    ],
)
def test_bad_list_query(http: httpx.Client, query: str, code: str, message: str) -> None:
    response = http.get(f"/v3/events?{query}")
    assert (response.status_code, response.json()) == (400, {"code": code, "message": message})


def test_unknown_route_and_method(http: httpx.Client) -> None:
    missing = http.get("/v3/nothing")
    wrong = http.delete("/v3/events")
    assert (missing.status_code, missing.json()) == (
        404,
        {"code": "not_found", "message": "Not Found"},
    )
    assert (wrong.status_code, wrong.json()) == (
        405,
        {"code": "method_not_allowed", "message": "Method Not Allowed"},
    )


def test_store_failure_is_503_and_retryable(daemon: Daemon, http: httpx.Client) -> None:
    daemon.store.close()
    broken = daemon.db_url.replace("sqlite:///", "")
    # Make the database unusable under the daemon: its file replaced by a directory.
    os.replace(broken, broken + ".moved")
    os.mkdir(broken)
    response = http.post("/v3/events", content=event())
    assert response.status_code == 503
    assert response.json() == {
        "code": "service_unavailable",
        "message": "the event store is unavailable; retry later",
    }
    assert response.headers["Retry-After"] == "1"
    assert API_KEY not in response.text
