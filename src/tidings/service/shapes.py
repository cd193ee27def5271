"""The body shapes events arrive in: Brevo's `/v3/events` (single and batch) and the tracker's.

Each function turns a decoded JSON body into `Event`s (not yet attached to a contact) or raises
an EventError naming the field. A batch is checked whole and refused whole when any item is
invalid (BatchEventError lists every failing index): SDK clients retry a whole batch, so a
partial write would turn their retry into duplicates of the good half.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from tidings.errors import BatchEventError, EventError
from tidings.model.events import Event, IdentifierKind
from tidings.service import validation as v
from tidings.service.validation import Limits

BREVO_FIELDS = (
    "event_name",
    "identifiers",
    "contact_properties",
    "event_date",
    "event_properties",
    "object",
)


def new_event_id() -> str:
    """A fresh event id: a random (version 4) UUID's hex, as `uuid.uuid4().hex` gives it,
    without building the UUID object (a third of the checks' time for a small event)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # the version, 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    return raw.hex()


def brevo_event(
    raw: object,
    *,
    now: datetime,
    limits: Limits,
    path: str = "",
    source: str = "api",
    event_id: str | None = None,
) -> Event:
    """One event in Brevo's `POST /v3/events` shape (`event_id`: its id, else a fresh one)."""
    prefix = f"{path}." if path else ""
    body = v.expect_object(raw, path or "body")
    v.reject_unknown(body, BREVO_FIELDS, path)
    return Event(
        id=new_event_id() if event_id is None else event_id,
        name=v.event_name(body.get("event_name"), f"{prefix}event_name"),
        identifiers=v.identifiers(body.get("identifiers"), f"{prefix}identifiers"),
        occurred_at=v.event_date(
            body.get("event_date"), f"{prefix}event_date", now=now, limits=limits
        ),
        received_at=now,
        properties=v.properties(body.get("event_properties"), f"{prefix}event_properties", limits),
        contact_properties=v.attributes(
            body.get("contact_properties"), f"{prefix}contact_properties"
        ),
        object=v.object_ref(body.get("object"), f"{prefix}object"),
        source=source,
    )


def brevo_batch(raw: object, *, now: datetime, limits: Limits) -> list[Event]:
    """`POST /v3/events/batch`: `{"events": [...]}`, every item valid or nothing accepted."""
    body = v.expect_object(raw, "body")
    v.reject_unknown(body, ("events",), "")
    items = body.get("events")
    if v.is_absent(items):
        raise EventError("events", "is required", code="missing_parameter")
    if not isinstance(items, list):
        raise EventError("events", f"expected an array, got {v.json_type(items)}")
    if not items:
        raise EventError("events", "must contain at least one event", code="missing_parameter")
    if len(items) > limits.max_batch_events:
        raise EventError(
            "events", f"{len(items)} events, more than the {limits.max_batch_events} allowed"
        )
    events: list[Event] = []
    problems: list[tuple[int, EventError]] = []
    for index, item in enumerate(items):
        try:
            # Paths inside the item are relative; BatchEventError prefixes `events[i].`.
            v.expect_object(item, "")
            events.append(brevo_event(item, now=now, limits=limits, path=""))
        except EventError as exc:
            problems.append((index, exc))
    if problems:
        raise BatchEventError(problems)
    return events


def _email(body: dict[str, Any]) -> dict[IdentifierKind, str]:
    value = body.get("email")
    if v.is_absent(value):
        raise EventError("email", "is required", code="missing_parameter")
    return {IdentifierKind.email_id: v.identifier(IdentifierKind.email_id, value, "email")}


def tracker_identify(raw: object, *, now: datetime, limits: Limits) -> Event:
    """`POST /api/v2/identify` `{email, attributes}`: an `identify` event updating the contact."""
    body = v.expect_object(raw, "body")
    v.reject_unknown(body, ("email", "attributes"), "")
    return Event(
        id=new_event_id(),
        name="identify",
        identifiers=_email(body),
        occurred_at=now,
        received_at=now,
        contact_properties=v.attributes(body.get("attributes"), "attributes"),
        source="tracker",
    )


def tracker_event(raw: object, *, now: datetime, limits: Limits) -> tuple[Event, str | None]:
    """`POST /api/v2/trackEvent`; returns the event and its `eventdata.id`, if any."""
    body = v.expect_object(raw, "body")
    v.reject_unknown(body, ("email", "event", "properties", "eventdata"), "")
    identifiers = _email(body)
    name = v.event_name(body.get("event"), "event")
    data: dict[str, Any] = {}
    data_id: str | None = None
    if not v.is_absent(body.get("eventdata")):
        eventdata = v.expect_object(body["eventdata"], "eventdata")
        v.reject_unknown(eventdata, ("id", "data"), "eventdata")
        if not v.is_absent(eventdata.get("id")):
            raw_id = eventdata["id"]
            if isinstance(raw_id, int) and not isinstance(raw_id, bool):
                raw_id = str(raw_id)
            data_id = v.expect_string(raw_id, "eventdata.id", max_chars=255)
        if not v.is_absent(eventdata.get("data")):
            payload = eventdata["data"]
            data = payload if isinstance(payload, dict) else {"data": payload}
            v.check_json(
                data,
                "eventdata.data",
                max_depth=limits.max_depth,
                max_bytes=limits.max_properties_bytes,
            )
    event = Event(
        id=new_event_id(),
        name=name,
        identifiers=identifiers,
        occurred_at=now,
        received_at=now,
        properties=data,
        contact_properties=v.attributes(body.get("properties"), "properties"),
        source="tracker",
    )
    return event, data_id


def tracker_page(raw: object, *, now: datetime, limits: Limits) -> Event:
    """`POST /api/v2/trackPage` `{email, page, properties}`: a `page_viewed` event."""
    body = v.expect_object(raw, "body")
    v.reject_unknown(body, ("email", "page", "properties"), "")
    identifiers = _email(body)
    page = (
        v.expect_string(body.get("page"), "page", max_chars=2048)
        if not v.is_absent(body.get("page"))
        else None
    )
    props = v.properties(body.get("properties"), "properties", limits)
    if page is not None:
        props = {**props, "page": page}
    return Event(
        id=new_event_id(),
        name="page_viewed",
        identifiers=identifiers,
        occurred_at=now,
        received_at=now,
        properties=props,
        source="tracker",
    )


def tracker_link(raw: object, *, now: datetime, limits: Limits) -> Event:
    """`POST /api/v2/trackLink` `{email, link, properties}`: a `link_clicked` event."""
    body = v.expect_object(raw, "body")
    v.reject_unknown(body, ("email", "link", "properties"), "")
    identifiers = _email(body)
    if v.is_absent(body.get("link")):
        raise EventError("link", "is required", code="missing_parameter")
    link = v.expect_string(body["link"], "link", max_chars=2048)
    return Event(
        id=new_event_id(),
        name="link_clicked",
        identifiers=identifiers,
        occurred_at=now,
        received_at=now,
        properties={"link": link},
        contact_properties=v.attributes(body.get("properties"), "properties"),
        source="tracker",
    )
