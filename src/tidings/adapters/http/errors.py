"""Brevo-shaped errors: `{"code", "message"}` bodies, the handlers that produce them, body limits.

Codes (docs/ingestion.md): `missing_parameter` and `invalid_parameter` (400), `unauthorized`
(401), `not_found` (404), `method_not_allowed` (405), `request_entity_too_large` (413),
`too_many_requests` (429), `service_unavailable` (503, the store failed: retry), and
`internal_error` (500, a bug). Messages name the field and never contain a key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.errors import BatchEventError, EventError, StoreError

log = logging.getLogger(__name__)

_STATUS_CODES = {
    401: "unauthorized",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_entity_too_large",
    429: "too_many_requests",
}


class ApiProblemError(Exception):
    """An HTTP error answered with Brevo's body; raised by routes and dependencies."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """A JSON error body; ASCII-escaped so any text, even a lone surrogate, encodes safely."""
    body = {"code": code, "message": message, **(extra or {})}
    return Response(
        json.dumps(body, ensure_ascii=True).encode("ascii"),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def event_error_response(exc: EventError) -> Response:
    """400 for an event that cannot be accepted; a batch lists every failing index."""
    extra: dict[str, Any] = {}
    if isinstance(exc, BatchEventError):
        extra["errors"] = [
            {
                "eventIndex": [index],
                "field": BatchEventError.item_path(index, error),
                "code": error.code,
                "message": f"{BatchEventError.item_path(index, error)}: {error.reason}",
            }
            for index, error in exc.problems
        ]
    return error_response(400, exc.code, str(exc), extra=extra)


async def _problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblemError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, extra=exc.extra)


async def _event_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EventError)
    return event_error_response(exc)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body"))
    message = f"{where}: {first.get('msg', 'invalid value')}" if where else "invalid request"
    code = "missing_parameter" if first.get("type") == "missing" else "invalid_parameter"
    return error_response(400, code, message)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "invalid_parameter")
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _store(request: Request, exc: Exception) -> Response:
    return store_failure_response(request.method, request.url.path, exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_error_response(request.method, request.url.path)


def store_failure_response(method: str, path: str, exc: Exception) -> Response:
    """503: the store failed, the client may retry (logged without the request's body)."""
    log.error("store failure on %s %s: %s", method, path, exc)
    return error_response(
        503,
        "service_unavailable",
        "the event store is unavailable; retry later",
        headers={"Retry-After": "1"},
    )


def unexpected_error_response(method: str, path: str) -> Response:
    """500 for a bug; call from the `except` block, so the log carries the traceback."""
    log.exception("unexpected error on %s %s", method, path)
    return error_response(500, "internal_error", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error a request can meet to a Brevo-shaped body."""
    app.add_exception_handler(ApiProblemError, _problem)
    app.add_exception_handler(EventError, _event_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(StoreError, _store)
    app.add_exception_handler(Exception, _unexpected)


class BodyTooLargeError(Exception):
    """Raised from `receive` when the streamed body passes the limit; `body_done` says
    whether the client had sent all of it."""

    def __init__(self, *, body_done: bool) -> None:
        super().__init__("body too large")
        self.body_done = body_done


class BodyLimitMiddleware:
    """Refuse bodies over a limit with 413 before they are buffered: by Content-Length when
    given, else by counting the streamed chunks. Batch paths get their own, larger limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_batch_body_bytes: int,
        batch_paths: tuple[str, ...] = ("/v3/events/batch",),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_batch_body_bytes = max_batch_body_bytes
        self.batch_paths = batch_paths

    def limit_for(self, path: str) -> int:
        """The most bytes a body sent to this path may have."""
        return self.max_batch_body_bytes if path in self.batch_paths else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Apply the limit to HTTP requests; pass everything else through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope["headers"])
        if declared is not None and declared > limit:
            await refuse_too_large(scope, receive, send, limit)
            return
        seen = 0
        started = False
        body_done = False

        async def counted_receive() -> Message:
            nonlocal seen, body_done
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > limit:
                    raise BodyTooLargeError(body_done=body_done)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLargeError:
            if not started:
                await refuse_too_large(scope, receive, send, limit, drain=not body_done)


async def refuse_too_large(
    scope: Scope, receive: Receive, send: Send, limit: int, *, drain: bool = True
) -> None:
    """Answer 413 for a body over `limit` (after draining a bounded part of the rest)."""
    # Read (and drop) a bounded amount of what the client is still sending, so it gets to
    # read our 413 instead of a connection reset in the middle of its upload.
    drained = 0
    while drain and drained <= 4 * limit:
        message = await receive()
        if message["type"] != "http.request":
            break
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    response = error_response(
        413,
        "request_entity_too_large",
        f"body: larger than the {limit} bytes allowed for {scope.get('path', '')}",
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The declared Content-Length (the first one), if it is a number."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
