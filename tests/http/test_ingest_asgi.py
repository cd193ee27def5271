"""The lean ingestion routes (`IngestRoutes`) answer every request exactly as the FastAPI routes
they stand in front of: same status, headers and body, same rows stored, same exceptions.

Each case is a few requests, sent over ASGI to two fresh apps: once through `TidingsApi` (which
hands the two POSTs to `IngestRoutes`) and once through FastAPI's own handling of the same app.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from support.daemon import API_KEY, T0, TRACKER_KEY
from tidings.adapters.clock import ManualClock
from tidings.adapters.http.app import HttpDeps, HttpLimits, TidingsApi, create_app
from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.memory import MemoryStore, MemoryUnitOfWork
from tidings.errors import StoreError
from tidings.service.ingest import IngestService

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def event(**fields: object) -> dict[str, object]:
    """A valid Brevo event with some fields replaced."""
    return {"event_name": "cart_updated", "identifiers": {"email_id": "jo@example.org"}, **fields}


def body_of(value: object) -> bytes:
    return json.dumps(value).encode()


@dataclass(frozen=True)
class Request:
    """One request: the body is sent in `chunks`; `length` adds a Content-Length header."""

    path: str = "/v3/events"
    chunks: tuple[bytes, ...] = (body_of(event()),)
    headers: tuple[tuple[str, str], ...] = (("api-key", API_KEY),)
    length: bool = True
    method: str = "POST"


@dataclass
class Answer:
    """What the app sent back, what it raised (if anything) after answering, and how many of
    the body's chunks it left unread."""

    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    raised: str | None = None
    unread: int = 0


async def send_request(app: ASGIApp, request: Request) -> Answer:
    headers = [(k.lower().encode(), v.encode()) for k, v in request.headers]
    if request.length:
        headers.append((b"content-length", str(sum(map(len, request.chunks))).encode()))
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(request.chunks) - 1}
        for i, chunk in enumerate(request.chunks)
    ]
    answer = Answer()

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # a client that sent everything waits for the answer
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    try:
        await app(scope, receive, send)
    except Exception as exc:
        answer.raised = type(exc).__name__
    answer.unread = len(pending)
    return answer


class BrokenStore(MemoryStore):
    """A store whose transactions fail with `error` once `broken` is set."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.broken = False

    @contextmanager
    def transaction(self) -> Iterator[MemoryUnitOfWork]:
        if self.broken:
            raise self.error
        with super().transaction() as uow:
            yield uow


@dataclass(frozen=True)
class Case:
    requests: tuple[Request, ...]
    limits: HttpLimits = field(default_factory=HttpLimits)
    store_error: Exception | None = None


def make_app(case: Case) -> tuple[TidingsApi, MemoryStore]:
    store: MemoryStore = BrokenStore(case.store_error) if case.store_error else MemoryStore()
    clock = ManualClock(T0)
    ids = itertools.count(1)
    ingest = IngestService(store, clock, new_contact_id=lambda: str(next(ids)))
    keys = KeyChecker(api_keys=[API_KEY], tracker_keys=[TRACKER_KEY], clock=clock)
    deps = HttpDeps(store=store, clock=clock, ingest=ingest, keys=keys, limits=case.limits)
    if case.store_error is not None:
        assert isinstance(store, BrokenStore)
        store.broken = True
    return create_app(deps), store


def run(case: Case, *, lean: bool) -> tuple[list[Answer], list[dict[str, Any]]]:
    app, store = make_app(case)

    def through_fastapi(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return FastAPI.__call__(app, scope, receive, send)

    served: ASGIApp = app if lean else through_fastapi

    async def scenario() -> list[Answer]:
        answers = [await send_request(served, request) for request in case.requests]
        await app.state.deps.ingest.aclose()
        return answers

    answers = asyncio.run(scenario())
    if isinstance(store, BrokenStore):
        store.broken = False
    with store.transaction() as uow:
        events, _ = uow.list_events(limit=1000)
    stored = [
        e.model_dump(exclude={"id", "received_at", "occurred_at"}) | {"dated": e.occurred_at}
        for e in events
    ]
    return answers, stored


def chunked(body: bytes, size: int) -> tuple[bytes, ...]:
    return tuple(body[i : i + size] for i in range(0, len(body), size))


BIG = body_of(event(event_properties={"blob": "x" * 3000}))
SMALL_LIMITS = HttpLimits(max_body_bytes=2048, max_batch_body_bytes=4096)
BATCH = "/v3/events/batch"

CASES = {
    "one event": Case((Request(),)),
    "a batch": Case((Request(BATCH, (body_of({"events": [event(), event(event_name="b")]}),)),)),
    "history mode": Case(
        (
            Request(headers=(("api-key", API_KEY), ("X-Tidings-Mode", " History "))),
            Request(
                BATCH,
                (body_of({"events": [event(event_name="c")]}),),
                (("api-key", API_KEY), ("x-tidings-mode", "history")),
            ),
            Request(headers=(("api-key", API_KEY), ("X-Tidings-Mode", "live"))),
        )
    ),
    "unknown mode": Case((Request(headers=(("api-key", API_KEY), ("X-Tidings-Mode", "hist"))),)),
    "no key": Case((Request(headers=()), Request(BATCH, headers=()))),
    "empty key": Case((Request(headers=(("api-key", ""),)),)),
    "wrong key": Case((Request(headers=(("api-key", "nope"),)),)),
    "tracker key": Case((Request(BATCH, headers=(("api-key", TRACKER_KEY),)),)),
    "first key header wins": Case((Request(headers=(("api-key", "nope"), ("api-key", API_KEY))),)),
    "empty body": Case((Request(chunks=(b"",)), Request(BATCH, (b"  ",)))),
    "malformed JSON": Case((Request(chunks=(b'{"event_name": ',)),)),
    "bad field": Case((Request(chunks=(body_of(event(event_name="a b")),)),)),
    "batch with one bad event": Case(
        (
            Request(
                BATCH,
                (body_of({"events": [event(), event(identifiers={"email_id": "x"}), event()]}),),
            ),
        )
    ),
    "bad batch shape": Case((Request(BATCH, (body_of({"events": []}),)),)),
    "unknown contact id": Case((Request(chunks=(body_of(event(identifiers={"contact_id": 9})),)),)),
    "idempotency key repeated": Case(
        (
            Request(headers=(("api-key", API_KEY), ("Idempotency-Key", "k1"))),
            Request(
                chunks=(body_of(event(event_name="other")),),
                headers=(("api-key", API_KEY), ("Idempotency-Key", "k1")),
            ),
        )
    ),
    "idempotency key empty or too long": Case(
        (
            Request(headers=(("api-key", API_KEY), ("Idempotency-Key", ""))),
            Request(headers=(("api-key", API_KEY), ("Idempotency-Key", "k" * 256))),
        )
    ),
    "same body twice": Case((Request(), Request())),
    "declared length over the limit": Case(
        (Request(chunks=(BIG,)), Request(BATCH, (b'{"events": [' + BIG + b"]}",))), SMALL_LIMITS
    ),
    "declared length over the limit without a key": Case(
        (Request(chunks=(BIG,), headers=()),), SMALL_LIMITS
    ),
    "chunked body over the limit": Case(
        (Request(chunks=chunked(BIG, 1000), length=False),), SMALL_LIMITS
    ),
    "chunked body over the limit in its last chunk": Case(
        (Request(chunks=(BIG[:2000], BIG[2000:]), length=False),), SMALL_LIMITS
    ),
    "chunked body within the limit": Case(
        (Request(chunks=chunked(body_of(event()), 7), length=False),), SMALL_LIMITS
    ),
    "rate limit": Case(
        tuple(Request(chunks=(body_of(event(event_name=n)),)) for n in "abc"),
        HttpLimits(rate_limit_per_minute=2),
    ),
    "store failure": Case(
        (Request(), Request(BATCH, (body_of({"events": [event()]}),))),
        store_error=StoreError("disk gone"),
    ),
    "unexpected failure": Case((Request(),), store_error=RuntimeError("a bug")),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_lean_routes_answer_as_the_fastapi_routes(
    case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    def logged() -> list[tuple[str, str, str]]:
        lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
        caplog.clear()
        return [line for line in lines if line[0].startswith("tidings")]

    lean = run(case, lean=True)
    lean_log = logged()
    routed = run(case, lean=False)
    assert lean == routed
    assert lean_log == logged()
    assert all(answer.status is not None for answer in lean[0])


def test_a_missing_key_is_refused_with_brevos_body() -> None:
    answers, stored = run(CASES["no key"], lean=True)
    body = {"code": "unauthorized", "message": "api-key header is missing"}
    assert [(a.status, json.loads(a.body)) for a in answers] == [(401, body), (401, body)]
    assert stored == []


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored() -> None:
    answers, stored = run(CASES["chunked body over the limit"], lean=True)
    assert [(a.status, json.loads(a.body)) for a in answers] == [
        (
            413,
            {
                "code": "request_entity_too_large",
                "message": "body: larger than the 2048 bytes allowed for /v3/events",
            },
        )
    ]
    assert (b"connection", b"close") in answers[0].headers
    assert stored == []


def test_a_batch_with_one_bad_event_names_its_index_and_field() -> None:
    answers, stored = run(CASES["batch with one bad event"], lean=True)
    assert answers[0].status == 400
    assert json.loads(answers[0].body)["errors"] == [
        {
            "eventIndex": [1],
            "field": "events[1].identifiers.email_id",
            "code": "invalid_parameter",
            "message": "events[1].identifiers.email_id: expected an email address",
        }
    ]
    assert stored == []


def test_an_unexpected_failure_is_answered_500_logged_and_raised_to_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers, _ = run(CASES["unexpected failure"], lean=True)
    assert (answers[0].status, answers[0].raised) == (500, "RuntimeError")
    assert "unexpected error on POST /v3/events" in caplog.messages


def test_a_store_failure_is_answered_503_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    answers, _ = run(CASES["store failure"], lean=True)
    assert [a.status for a in answers] == [503, 503]
    assert "store failure on POST /v3/events/batch: disk gone" in caplog.messages


@pytest.mark.parametrize(
    ("method", "path", "root_path", "lean"),
    [
        ("POST", "/v3/events", "", True),
        ("POST", "/v3/events/batch", "", True),
        ("GET", "/v3/events", "", False),
        ("POST", "/v3/events/", "", False),
        ("POST", "/api/v2/trackEvent", "", False),
        ("POST", "/prefix/v3/events", "/prefix", False),
    ],
)
def test_only_the_two_ingestion_posts_take_the_lean_routes(
    method: str, path: str, root_path: str, lean: bool
) -> None:
    app, _ = make_app(Case(()))
    taken: list[str] = []

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        taken.append(scope["path"])

    app.ingest_routes = recorder  # type: ignore[assignment]
    scope: Scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": root_path,
        "headers": [],
        "query_string": b"",
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    asyncio.run(app(scope, receive, send))
    assert taken == ([path] if lean else [])
