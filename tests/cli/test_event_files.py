"""The sample files of `tidings preview`: a Brevo event, a contact with its zone and history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tidings.cli.event_files import read_contact, read_event
from tidings.errors import EventError
from tidings.model.contacts import Channel
from tidings.model.events import IdentifierKind

NOW = datetime(2030, 1, 1, tzinfo=UTC)
EVENT = {
    "event_name": "cart_updated",
    "identifiers": {"email_id": "Ann@Example.com"},
    "contact_properties": {"FIRSTNAME": "Ann"},
    "event_date": "2025-03-04T14:30:00+01:00",
    "event_properties": {"cart_id": "k1"},
}


def write(tmp_path: Path, name: str, body: Any) -> Path:
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body), encoding="utf-8")
    return path


def test_an_event_is_read_with_a_fixed_id_and_its_own_date(tmp_path) -> None:
    event = read_event(write(tmp_path, "event.json", EVENT), now=NOW)

    assert (event.id, event.name, event.occurred_at) == (
        "preview",
        "cart_updated",
        datetime(2025, 3, 4, 13, 30, tzinfo=UTC),
    )
    assert event.identifiers == {IdentifierKind.email_id: "ann@example.com"}
    assert event.properties == {"cart_id": "k1"}


def test_an_event_far_in_the_future_is_a_fine_sample(tmp_path) -> None:
    body = {**EVENT, "event_date": "2099-01-01T00:00:00Z"}

    assert read_event(write(tmp_path, "event.json", body), now=NOW).occurred_at.year == 2099


def test_an_event_without_a_date_happens_now(tmp_path) -> None:
    body = {k: v for k, v in EVENT.items() if k != "event_date"}

    assert read_event(write(tmp_path, "event.json", body), now=NOW).occurred_at == NOW


def test_without_a_contact_file_the_contact_comes_from_the_event(tmp_path) -> None:
    event = read_event(write(tmp_path, "event.json", EVENT), now=NOW)

    contact, history = read_contact(None, event)

    assert (contact.email, contact.attributes, contact.timezone) == (
        "ann@example.com",
        {"FIRSTNAME": "Ann"},
        None,
    )
    assert history == []


def test_a_contact_file_gives_identifiers_zone_consent_and_history(tmp_path) -> None:
    event = read_event(write(tmp_path, "event.json", EVENT), now=NOW)
    contact_file = write(
        tmp_path,
        "contact.json",
        {
            "identifiers": {"phone_id": "+33 6 12 34 56 78"},
            "attributes": {"FIRSTNAME": "Annie", "PLAN": "gold"},
            "timezone": "Europe/Paris",
            "unsubscribed": ["sms"],
            "events": [{"event_name": "product_viewed", "event_date": "2025-03-04T14:00:00+01:00"}],
        },
    )

    contact, history = read_contact(contact_file, event)

    assert (contact.email, contact.phone) == ("ann@example.com", "+33612345678")
    # The event's contact_properties update the attributes, as ingestion does.
    assert contact.attributes == {"FIRSTNAME": "Ann", "PLAN": "gold"}
    assert (contact.timezone, contact.unsubscribed) == ("Europe/Paris", frozenset({Channel.sms}))
    assert [(e.id, e.name, e.occurred_at) for e in history] == [
        ("preview-history-0", "product_viewed", datetime(2025, 3, 4, 13, 0, tzinfo=UTC))
    ]
    assert history[0].identifiers == contact.identifiers


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[1", "contact.json: malformed JSON"),
        ({"timezone": "Mars/Olympus"}, "contact.json: timezone: expected an IANA time zone"),
        ({"unsubscribed": ["fax"]}, "contact.json: unsubscribed[0]: expected 'email' or 'sms'"),
        ({"name": "Ann"}, "contact.json: unknown field(s) 'name'"),
        (
            {"events": [{"event_name": "product_viewed"}]},
            "contact.json: events[0].event_date: is required for an earlier event",
        ),
    ],
)
def test_a_bad_contact_file_names_the_file_and_the_field(tmp_path, body, message) -> None:
    event = read_event(write(tmp_path, "event.json", EVENT), now=NOW)
    path = write(tmp_path, "contact.json", body)

    with pytest.raises(EventError) as caught:
        read_contact(path, event)

    assert str(caught.value).startswith(f"{tmp_path}/{message}")
