"""Brevo's tracker endpoints (`/api/v2/identify`, `trackEvent`, `trackPage`, `trackLink`, header
`ma-key`) and the JavaScript tracker that calls them, served at `/js/tracker.js`.

Tracker keys sit in public web pages, so these routes only ever add live events (a request
asking for `X-Tidings-Mode: history` is refused, 403); they answer browsers from any origin
(CORS), with no credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, Request, Security
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.adapters.http import MODE_HEADER, schemas
from tidings.adapters.http.deps import (
    authorise_async,
    deps_of,
    history_mode,
    ingested,
    ma_key_header,
    rate_headers,
)
from tidings.adapters.http.errors import ApiProblemError
from tidings.model.events import Event
from tidings.model.keys import ApiKey, KeyKind
from tidings.service.shapes import tracker_event, tracker_identify, tracker_link, tracker_page
from tidings.service.validation import Limits, parse_json

router = APIRouter(tags=["tracker"])
TRACKER_JS_PATH = "/js/tracker.js"
_CORS_PREFIXES = ("/api/v2/", "/js/")


async def tracker_key(request: Request, presented: str | None = Security(ma_key_header)) -> ApiKey:
    """The `ma-key`: a tracker key (an api key is accepted too: it may do more)."""
    return await authorise_async(request, presented, (KeyKind.tracker, KeyKind.api), "ma-key")


TrackerKeyDep = Annotated[ApiKey, Security(tracker_key)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
Parser = Callable[..., Event]


async def _track(
    request: Request,
    key: ApiKey,
    parse: Callable[[object, datetime, Limits], tuple[Event, str | None]],
    idempotency_key: str | None,
) -> Response:
    deps = deps_of(request)
    if history_mode(request.headers.get(MODE_HEADER)):
        # Said, not ignored: a client asking for history must never start workflows unawares.
        raise ApiProblemError(
            403,
            "permission_denied",
            f"{MODE_HEADER}: history is for api keys on /v3/events; the tracker adds live events",
        )
    body = await request.body()
    event, data_id = parse(parse_json(body), deps.clock.now(), deps.ingest.limits)
    submission = deps.ingest.submission(
        [event],
        key_id=key.id,
        body=body,
        idempotency_key=idempotency_key,
        tracker_ids=[data_id],
    )
    outcome = await deps.ingest.ingest(submission)
    ingested(deps, outcome)
    return Response(status_code=204, headers=rate_headers(request))


def _simple(parser: Parser) -> Callable[[object, datetime, Limits], tuple[Event, str | None]]:
    return lambda raw, now, limits: (parser(raw, now=now, limits=limits), None)


def _with_id(raw: object, now: datetime, limits: Limits) -> tuple[Event, str | None]:
    return tracker_event(raw, now=now, limits=limits)


_TRACKER = {
    "status_code": 204,
    "response_class": Response,
    "responses": schemas.ERRORS
    | {403: {"model": schemas.ErrorBody, "description": f"{MODE_HEADER}: history asked for"}},
}


@router.post(
    "/api/v2/identify",
    summary="Identify a visitor",
    openapi_extra=schemas.json_body(schemas.TrackerIdentify),
    **_TRACKER,  # type: ignore[arg-type]
)
async def identify(
    request: Request, key: TrackerKeyDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Create or update the contact with this email (an `identify` event is stored)."""
    return await _track(request, key, _simple(tracker_identify), idempotency_key)


@router.post(
    "/api/v2/trackEvent",
    summary="Track a custom event",
    openapi_extra=schemas.json_body(schemas.TrackerEvent),
    **_TRACKER,  # type: ignore[arg-type]
)
async def track_event(
    request: Request, key: TrackerKeyDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Store a custom event; `eventdata.id` makes it idempotent."""
    return await _track(request, key, _with_id, idempotency_key)


@router.post(
    "/api/v2/trackPage",
    summary="Track a page view",
    openapi_extra=schemas.json_body(schemas.TrackerPage),
    **_TRACKER,  # type: ignore[arg-type]
)
async def track_page(
    request: Request, key: TrackerKeyDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Store a `page_viewed` event."""
    return await _track(request, key, _simple(tracker_page), idempotency_key)


@router.post(
    "/api/v2/trackLink",
    summary="Track a link click",
    openapi_extra=schemas.json_body(schemas.TrackerLink),
    **_TRACKER,  # type: ignore[arg-type]
)
async def track_link(
    request: Request, key: TrackerKeyDep, idempotency_key: IdempotencyKey = None
) -> Response:
    """Store a `link_clicked` event."""
    return await _track(request, key, _simple(tracker_link), idempotency_key)


def tracker_script() -> bytes:
    """The JavaScript tracker shipped in the package."""
    return (resources.files("tidings.adapters.http") / "static" / "tracker.js").read_bytes()


@router.get(
    TRACKER_JS_PATH,
    summary="The JavaScript tracker",
    response_class=Response,
    responses={200: {"content": {"application/javascript": {}}}},
)
def tracker_js() -> Response:
    """Serve the tracker; pages load it with `<script src=".../js/tracker.js" async>`."""
    return Response(
        tracker_script(),
        media_type="application/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600"},
    )


class TrackerCorsMiddleware:
    """CORS for the tracker routes only: any origin, no credentials, preflight answered here.
    `/v3` stays closed to browsers: its keys are secrets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer preflights and add `Access-Control-Allow-Origin` on tracker paths."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(_CORS_PREFIXES):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            response = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": "*",
                    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                    "Access-Control-Allow-Headers": "content-type, ma-key, idempotency-key",
                    "Access-Control-Max-Age": "86400",
                },
            )
            await response(scope, receive, send)
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"access-control-allow-origin", b"*"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_cors)
