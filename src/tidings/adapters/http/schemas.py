"""Pydantic models that *describe* the HTTP bodies in the OpenAPI document.

Requests are validated by `tidings.service.shapes` (field paths, null-as-absent, limits) and
not by these models, so their messages stay Brevo-like; these exist so `docs/openapi.json` and
`/openapi.json` say what each route takes and returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tidings.adapters.http import HISTORY, MODE_HEADER


class ErrorBody(BaseModel):
    """Every error: Brevo's code and a message naming the field."""

    code: str = Field(examples=["invalid_parameter"])
    message: str = Field(examples=["identifiers.email_id: expected an email address"])


class BatchItemError(BaseModel):
    """One failing item of a refused batch."""

    eventIndex: list[int]  # noqa: N815 - Brevo's field name
    field: str
    code: str
    message: str


class BatchErrorBody(ErrorBody):
    """A refused batch: nothing was stored; `errors` lists every failing item."""

    errors: list[BatchItemError] = []


class EventIdentifiers(BaseModel):
    """Who the event is about; at least one. Unknown keys are refused."""

    contact_id: int | None = None
    email_id: str | None = None
    ext_id: str | None = None
    phone_id: str | None = None
    whatsapp_id: str | None = None
    landline_number_id: str | None = None


class EventObject(BaseModel):
    """The object record the event is about (kept as given)."""

    type: str | None = None
    identifiers: dict[str, Any] | None = None


class CreateEvent(BaseModel):
    """`POST /v3/events`. JSON null means absent."""

    event_name: str = Field(max_length=255, pattern=r"^[A-Za-z0-9_-]+$")
    identifiers: EventIdentifiers
    contact_properties: dict[str, str | int | float | bool] | None = None
    event_date: datetime | None = Field(
        default=None, description="ISO 8601, any offset; at most 1 day (configurable) ahead."
    )
    event_properties: dict[str, Any] | None = Field(
        default=None, description="Any JSON object, at most 50 KB and 16 levels deep."
    )
    object: EventObject | None = None


class CreateBatchEvents(BaseModel):
    """`POST /v3/events/batch`: 1 to 1000 events, all valid or none stored."""

    events: list[CreateEvent] = Field(min_length=1, max_length=1000)


class BatchAccepted(BaseModel):
    """A stored batch (duplicates of earlier deliveries are counted, stored once)."""

    message: str = Field(examples=["Batch accepted"])
    count: int


class EventItem(BaseModel):
    """One event as `GET /v3/events` lists it."""

    id: str
    contact_id: int | str | None
    event_name: str
    event_date: datetime
    received_at: datetime
    identifiers: dict[str, str]
    event_properties: dict[str, Any]
    contact_properties: dict[str, Any]
    object_type: str | None = None
    object: dict[str, Any] | None = None
    source: str
    conflicts: dict[str, str] = {}


class EventsList(BaseModel):
    """A page of events, newest event date first, and how many match in all."""

    events: list[EventItem]
    count: int


class TrackerIdentify(BaseModel):
    """`POST /api/v2/identify`."""

    email: str
    attributes: dict[str, str | int | float | bool] | None = None


class TrackerEventData(BaseModel):
    """`eventdata`: `id` makes the event idempotent; `data` becomes its properties."""

    id: str | None = None
    data: Any = None


class TrackerEvent(BaseModel):
    """`POST /api/v2/trackEvent`: `properties` update the contact."""

    email: str
    event: str
    properties: dict[str, str | int | float | bool] | None = None
    eventdata: TrackerEventData | None = None


class TrackerPage(BaseModel):
    """`POST /api/v2/trackPage`: stored as a `page_viewed` event."""

    email: str
    page: str | None = None
    properties: dict[str, Any] | None = None


class TrackerLink(BaseModel):
    """`POST /api/v2/trackLink`: stored as a `link_clicked` event."""

    email: str
    link: str
    properties: dict[str, str | int | float | bool] | None = None


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    CreateEvent,
    CreateBatchEvents,
    TrackerIdentify,
    TrackerEvent,
    TrackerPage,
    TrackerLink,
)


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """An `openapi_extra` that documents a JSON request body by reference to `model`."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    204: {"description": "Stored (committed), or a duplicate of a stored event"},
    400: {"model": ErrorBody, "description": "Bad body: the message names the field"},
    401: {"model": ErrorBody, "description": "Missing or invalid key"},
    413: {"model": ErrorBody, "description": "Body larger than allowed"},
    429: {"model": ErrorBody, "description": "Over the key's rate limit (see Retry-After)"},
    503: {"model": ErrorBody, "description": "The store is unavailable; retry"},
}


def answered_as_history(response: dict[str, Any]) -> dict[str, Any]:
    """A success response that also documents the `X-Tidings-Mode: history` answer header."""
    header = {
        "description": "`history` when the request asked for it: the daemon honoured the mode",
        "schema": {"type": "string", "enum": [HISTORY]},
    }
    return {**response, "headers": {MODE_HEADER: header}}


def errors_except(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers, less some."""
    return {k: v for k, v in ERRORS.items() if k not in statuses}
