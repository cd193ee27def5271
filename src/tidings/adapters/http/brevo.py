"""Brevo's events API: `POST /v3/events`, `POST /v3/events/batch`, `GET /v3/events`.

Existing Brevo clients work by changing only their base URL to `http://HOST:PORT/v3`. Bodies are
read raw and validated by `tidings.service.shapes`, so every refusal names its field the way
Brevo's does; a 2xx is sent only after the events' transaction committed.

Tidings' one extension: `X-Tidings-Mode: history` on `POST /v3/events[/batch]` stores the events
as already processed (history for `has_event` and `count_events`; no workflow applies them) and
the answer carries the same header back, so a client can tell a daemon that honoured it from
one that ignored it. Only api keys reach these routes; Brevo clients never send the header.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.responses import Response

from tidings.adapters.http import HISTORY, MODE_HEADER, schemas
from tidings.adapters.http.deps import (
    HttpDeps,
    api_key_header,
    authorise_async,
    deps_of,
    history_mode,
    ingested,
    rate_headers,
)
from tidings.adapters.http.errors import ApiProblemError
from tidings.model.events import Event
from tidings.model.keys import ApiKey, KeyKind
from tidings.service.shapes import brevo_batch, brevo_event
from tidings.service.validation import parse_json

router = APIRouter(prefix="/v3", tags=["events"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Optional: a repeat with the same key is answered 2xx and stored once.",
    ),
]
Mode = Annotated[
    str | None,
    Header(
        alias=MODE_HEADER,
        description=(
            "Tidings only, optional: `history` stores the events as already processed, so history"
            " conditions (`has_event`, `count_events`) see them and no workflow starts; the answer"
            " then carries `X-Tidings-Mode: history`. Absent or `live`: workflows apply them."
        ),
    ),
]


async def api_key(request: Request, presented: str | None = Security(api_key_header)) -> ApiKey:
    """The `/v3` key: api keys only (tracker keys are public and cannot read)."""
    return await authorise_async(request, presented, (KeyKind.api,), "api-key")


ApiKeyDep = Annotated[ApiKey, Security(api_key)]


@router.post(
    "/events",
    status_code=204,
    response_class=Response,
    summary="Create an event",
    responses=schemas.ERRORS | {204: schemas.answered_as_history(schemas.ERRORS[204])},
    openapi_extra=schemas.json_body(schemas.CreateEvent),
)
async def create_event(
    request: Request, key: ApiKeyDep, idempotency_key: IdempotencyKey = None, mode: Mode = None
) -> Response:
    """Store one event; 204 once it is committed."""
    history = history_mode(mode)
    body = await request.body()
    await store_event(deps_of(request), key, body, idempotency_key=idempotency_key, history=history)
    return Response(status_code=204, headers=answer_headers(rate_headers(request), history))


@router.post(
    "/events/batch",
    status_code=202,
    response_model=schemas.BatchAccepted,
    summary="Create events in a batch",
    responses=schemas.errors_except(204)
    | {
        202: schemas.answered_as_history({}),
        400: {"model": schemas.BatchErrorBody, "description": "Refused whole"},
    },
    openapi_extra=schemas.json_body(schemas.CreateBatchEvents),
)
async def create_batch_events(
    request: Request, key: ApiKeyDep, idempotency_key: IdempotencyKey = None, mode: Mode = None
) -> Response:
    """Store up to 1000 events in one transaction; any invalid item refuses the whole batch."""
    history = history_mode(mode)
    body = await request.body()
    count = await store_batch(
        deps_of(request), key, body, idempotency_key=idempotency_key, history=history
    )
    return batch_accepted(count, answer_headers(rate_headers(request), history))


# The work of the two POST routes, shared with their lean twins in `ingest_asgi`, which serve
# the same requests below FastAPI's request handling.


async def store_event(
    deps: HttpDeps, key: ApiKey, body: bytes, *, idempotency_key: str | None, history: bool
) -> None:
    """Validate one Brevo event body and return once it is committed."""
    event = brevo_event(parse_json(body), now=deps.clock.now(), limits=deps.ingest.limits)
    submission = deps.ingest.submission(
        [event], key_id=key.id, body=body, idempotency_key=idempotency_key, history=history
    )
    outcome = await deps.ingest.ingest(submission)
    if not history:  # history gives the engine nothing to do
        ingested(deps, outcome)


async def store_batch(
    deps: HttpDeps, key: ApiKey, body: bytes, *, idempotency_key: str | None, history: bool
) -> int:
    """Validate a Brevo batch body, return how many events it held once they are committed."""
    now = deps.clock.now()
    limits = deps.ingest.limits
    # Decoding up to 10 MiB is CPU work: keep it off the event loop.
    events: list[Event] = await run_in_threadpool(
        lambda: brevo_batch(parse_json(body), now=now, limits=limits)
    )
    submission = deps.ingest.submission(
        events,
        key_id=key.id,
        body=body,
        idempotency_key=idempotency_key,
        batch=True,
        history=history,
    )
    outcome = await deps.ingest.ingest(submission)
    if not history:
        ingested(deps, outcome)
    return len(events)


def batch_accepted(count: int, headers: dict[str, str]) -> Response:
    """The 202 of a stored batch."""
    return JSONResponse(
        {"message": "Batch accepted", "count": count}, status_code=202, headers=headers
    )


def answer_headers(rate: dict[str, str], history: bool) -> dict[str, str]:
    """A success's headers: the rate limit, and the mode when it was history."""
    headers = dict(rate)
    if history:
        headers[MODE_HEADER] = HISTORY
    return headers


def _parse_when(value: str, name: str, *, end: bool) -> datetime:
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            # A bare end date includes that whole day.
            return datetime.combine(day, time.max if end else time.min, UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ApiProblemError(
            400, "invalid_parameter", f"{name}: expected YYYY-MM-DD or an RFC 3339 time"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _brevo_contact_id(contact_id: str | None) -> int | str | None:
    if contact_id is not None and contact_id.isdigit():
        return int(contact_id)
    return contact_id


def event_item(event: Event) -> dict[str, Any]:
    """One event in `GET /v3/events`: Brevo's fields, then ours."""
    return {
        "id": event.id,
        "contact_id": _brevo_contact_id(event.contact_id),
        "event_name": event.name,
        "event_date": _iso(event.occurred_at),
        "received_at": _iso(event.received_at),
        "identifiers": {kind.value: value for kind, value in event.identifiers.items()},
        "event_properties": event.properties,
        "contact_properties": event.contact_properties,
        "object_type": (event.object or {}).get("type"),
        "object": event.object,
        "source": event.source,
        "conflicts": {kind.value: note for kind, note in event.conflicts.items()},
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@router.get(
    "/events",
    response_model=schemas.EventsList,
    summary="List events",
    responses=schemas.errors_except(204, 413),
)
def get_events(  # noqa: PLR0917 - one parameter per Brevo query filter
    request: Request,
    key: ApiKeyDep,
    contact_id: Annotated[list[str] | None, Query(description="A contact id")] = None,
    event_name: Annotated[list[str] | None, Query(description="Repeatable")] = None,
    object_type: Annotated[list[str] | None, Query(description="Not supported")] = None,
    start_date: Annotated[str | None, Query(alias="startDate")] = None,
    end_date: Annotated[str | None, Query(alias="endDate")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """A page of events, newest event date first, with the total count."""
    deps = deps_of(request)
    if object_type:
        raise ApiProblemError(
            400, "invalid_parameter", "object_type: filtering by object type is not supported"
        )
    if contact_id and len(contact_id) > 1:
        raise ApiProblemError(400, "invalid_parameter", "contact_id: give at most one contact id")
    contact = contact_id[0] if contact_id else None
    if contact is not None and not (contact.isdigit() and contact.isascii()):
        raise ApiProblemError(400, "invalid_parameter", "contact_id: expected a positive integer")
    start = _parse_when(start_date, "startDate", end=False) if start_date else None
    end = _parse_when(end_date, "endDate", end=True) if end_date else None
    if start is not None and end is not None and start > end:
        raise ApiProblemError(400, "invalid_parameter", "startDate: must not be after endDate")
    with deps.store.transaction() as uow:
        events, count = uow.list_events(
            contact_id=str(int(contact)) if contact is not None else None,
            names=event_name or None,
            start=start,
            end=end,
            limit=limit,
            offset=offset,
        )
    return JSONResponse(
        {"events": [event_item(e) for e in events], "count": count},
        headers=rate_headers(request),
    )
