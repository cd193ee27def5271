"""The sample files `tidings preview` reads: an event in Brevo's shape, and optionally a contact.

EVENT.json is one `POST /v3/events` body (`event_name`, `identifiers`, `contact_properties`,
`event_properties`, `event_date`), checked by the same code as the HTTP API except that its date
may be anywhere in time (a sample is often dated in the past, or ahead of an appointment).

CONTACT.json is `{"identifiers": {...}, "attributes": {...}, "timezone": "Europe/Paris"}`, plus
optionally `"unsubscribed": ["sms"]` (channels the contact left) and `"events": [...]`: earlier
events of the contact in the same Brevo shape (each with an `event_date`; `identifiers` may be
left out), which the history helpers (`has_event`, `count_events`) see. Without a contact file
the contact is the event's identifiers with its `contact_properties` as attributes and no zone.
Either way the event's `contact_properties` update the attributes, as they do on ingestion.

Ids are fixed (`preview`, `preview-history-N`), so a preview never depends on randomness.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tidings.engine.timing import zone_named
from tidings.errors import EventError
from tidings.model.contacts import Channel, Contact
from tidings.model.events import Event
from tidings.service import validation as v
from tidings.service.shapes import brevo_event
from tidings.service.validation import Limits

PREVIEW_ID = "preview"
CONTACT_FIELDS = ("identifiers", "attributes", "timezone", "unsubscribed", "events")
# A sample may be dated anywhere: the API's limit on future dates is about clocks, not samples.
SAMPLE_LIMITS = Limits(future_tolerance=timedelta.max)

T = TypeVar("T")


def read_json(path: Path) -> Any:
    """The decoded JSON of a file; EventError when it cannot be read or decoded."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EventError("", f"cannot read: {exc.strerror or exc}") from exc
    return v.parse_json(raw, "")


def read_event(path: Path, *, now: datetime) -> Event:
    """The event of an EVENT.json file; `now` dates it only when it has no `event_date`."""
    raw = _checked(lambda: read_json(path), path)
    event = _checked(lambda: brevo_event(raw, now=now, limits=SAMPLE_LIMITS), path)
    return event.model_copy(update={"id": PREVIEW_ID, "contact_id": PREVIEW_ID})


def read_contact(path: Path | None, event: Event) -> tuple[Contact, list[Event]]:
    """The contact of a CONTACT.json file (or one made from the event) and its earlier events."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _checked(lambda: v.expect_object(read_json(path), ""), path)
        _checked(lambda: v.reject_unknown(raw, CONTACT_FIELDS, ""), path)
    identifiers = dict(event.identifiers)
    if not v.is_absent(raw.get("identifiers")):
        identifiers.update(_checked(lambda: v.identifiers(raw["identifiers"], "identifiers"), path))
    attributes: dict[str, Any] = _checked(
        lambda: dict(v.attributes(raw.get("attributes"), "attributes")), path
    )
    attributes.update(event.contact_properties)
    contact = Contact(
        id=PREVIEW_ID,
        identifiers=identifiers,
        attributes=attributes,
        timezone=_checked(lambda: _timezone(raw.get("timezone")), path),
        unsubscribed=_checked(lambda: _channels(raw.get("unsubscribed")), path),
        created_at=event.occurred_at,
        updated_at=event.occurred_at,
    )
    history = _checked(lambda: _history(raw.get("events"), contact, event.occurred_at), path)
    return contact, history


def _checked(read: Callable[[], T], path: Path | None) -> T:
    """Call `read`, naming the file in any EventError it raises."""
    try:
        return read()
    except EventError as exc:
        where = f"{path}: " if path is not None else ""
        field = f"{exc.field}: " if exc.field else ""
        raise EventError("", f"{where}{field}{exc.reason}") from exc


def _timezone(value: object) -> str | None:
    if v.is_absent(value):
        return None
    name = v.expect_string(value, "timezone")
    if zone_named(name) is None:
        raise EventError(
            "timezone", f"expected an IANA time zone such as Europe/Paris, got {name!r}"
        )
    return name


def _channels(value: object) -> frozenset[Channel]:
    if v.is_absent(value):
        return frozenset()
    if not isinstance(value, list):
        raise EventError("unsubscribed", f"expected an array, got {v.json_type(value)}")
    known = {channel.value: channel for channel in Channel}
    channels: set[Channel] = set()
    for index, item in enumerate(value):
        if item not in known:
            expected = " or ".join(repr(name) for name in known)
            raise EventError(f"unsubscribed[{index}]", f"expected {expected}, got {item!r}")
        channels.add(known[item])
    return frozenset(channels)


def _history(value: object, contact: Contact, before: datetime) -> list[Event]:
    """Earlier events of the contact, each dated."""
    if v.is_absent(value):
        return []
    if not isinstance(value, list):
        raise EventError("events", f"expected an array, got {v.json_type(value)}")
    events: list[Event] = []
    for index, item in enumerate(value):
        field = f"events[{index}]"
        body = dict(v.expect_object(item, field))
        if v.is_absent(body.get("event_date")):
            raise EventError(f"{field}.event_date", "is required for an earlier event")
        body.setdefault("identifiers", {k.value: val for k, val in contact.identifiers.items()})
        event = brevo_event(body, now=before, limits=SAMPLE_LIMITS, path=field)
        events.append(
            event.model_copy(
                update={"id": f"{PREVIEW_ID}-history-{index}", "contact_id": PREVIEW_ID}
            )
        )
    return events
