"""`POST /v3/events` and `POST /v3/events/batch` served as plain ASGI, below FastAPI.

These two routes carry nearly all of the daemon's traffic, and FastAPI's request handling
(its middleware stack, routing, dependency solving and parameter validation) cost more CPU per
request than storing the event. `IngestRoutes` answers them directly: one pass over the
headers, the same key check, mode, body limit and service calls as the FastAPI routes in
`tidings.adapters.http.brevo` (which stay mounted: they describe the routes in the OpenAPI
document and serve any request the shortcut passes over), and the same answers and error
bodies. `tidings.adapters.http.app.TidingsApi` sends the requests here.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tidings.adapters.http import MODE_HEADER
from tidings.adapters.http.brevo import (
    answer_headers,
    batch_accepted,
    store_batch,
    store_event,
)
from tidings.adapters.http.deps import HttpDeps, authorised_key, history_mode
from tidings.adapters.http.errors import (
    ApiProblemError,
    BodyTooLargeError,
    error_response,
    event_error_response,
    refuse_too_large,
    store_failure_response,
    unexpected_error_response,
)
from tidings.errors import EventError, StoreError
from tidings.model.keys import KeyKind

EVENT_PATH = "/v3/events"
BATCH_PATH = "/v3/events/batch"
_API_KEYS = (KeyKind.api,)
_MODE_HEADER = MODE_HEADER.lower().encode("latin-1")  # ASGI header names are lower case


@dataclass
class _Headers:
    """The request headers these routes read (the first of each, as Starlette's `get`)."""

    content_length: int | None = None
    api_key: str | None = None
    idempotency_key: str | None = None
    mode: str | None = None


def _read_headers(raw: list[tuple[bytes, bytes]]) -> _Headers:
    found = _Headers()
    seen: set[bytes] = set()
    for name, value in raw:
        if name in seen:
            continue
        if name == b"content-length":
            try:
                found.content_length = int(value)
            except ValueError:
                found.content_length = None
        elif name == b"api-key":
            found.api_key = value.decode("latin-1")
        elif name == b"idempotency-key":
            found.idempotency_key = value.decode("latin-1")
        elif name == _MODE_HEADER:
            found.mode = value.decode("latin-1")
        else:
            continue
        seen.add(name)
    return found


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, or BodyTooLargeError as soon as more than `limit` bytes came."""
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            seen += len(chunk)
            if seen > limit:
                raise BodyTooLargeError(body_done=not more)
            if chunk:
                chunks.append(chunk)
            if not more:
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


class IngestRoutes:
    """The ASGI app for exactly the two paths in `PATHS` (method POST)."""

    PATHS = frozenset((EVENT_PATH, BATCH_PATH))

    def __init__(self, deps: HttpDeps) -> None:
        self.deps = deps
        # Read once, as the body-limit middleware in front of the FastAPI routes reads them.
        self._event_limit = deps.limits.max_body_bytes
        self._batch_limit = deps.limits.max_batch_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one POST to one of `PATHS`, as the FastAPI route and its middleware would."""
        path: str = scope["path"]
        batch = path == BATCH_PATH
        limit = self._batch_limit if batch else self._event_limit
        headers = _read_headers(scope["headers"])
        if headers.content_length is not None and headers.content_length > limit:
            await refuse_too_large(scope, receive, send, limit)
            return
        try:
            response = await self._answer(receive, headers, batch=batch, limit=limit)
        except BodyTooLargeError as exc:
            await refuse_too_large(scope, receive, send, limit, drain=not exc.body_done)
            return
        except ApiProblemError as exc:
            response = error_response(
                exc.status, exc.code, exc.message, headers=exc.headers, extra=exc.extra
            )
        except EventError as exc:
            response = event_error_response(exc)
        except StoreError as exc:
            response = store_failure_response("POST", path, exc)
        except Exception:
            # As Starlette's ServerErrorMiddleware does: answer 500, then let the server see it.
            await unexpected_error_response("POST", path)(scope, receive, send)
            raise
        await response(scope, receive, send)

    async def _answer(
        self, receive: Receive, headers: _Headers, *, batch: bool, limit: int
    ) -> Response:
        deps = self.deps
        key, rate = await authorised_key(deps, headers.api_key, _API_KEYS, "api-key")
        history = history_mode(headers.mode)
        body = await read_body(receive, limit)
        idempotency_key = headers.idempotency_key
        if batch:
            count = await store_batch(
                deps, key, body, idempotency_key=idempotency_key, history=history
            )
            return batch_accepted(count, answer_headers(rate, history))
        await store_event(deps, key, body, idempotency_key=idempotency_key, history=history)
        return Response(status_code=204, headers=answer_headers(rate, history))
