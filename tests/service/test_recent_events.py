"""The index of recently stored events: sliding window, bounded, content not identity."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from tidings.model.events import Event, IdentifierKind
from tidings.service.recent import RecentEvents, content_digest

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def make_event(event_id: str, at: datetime, **fields: object) -> Event:
    return Event(
        id=event_id,
        name=str(fields.pop("name", "a")),
        identifiers={IdentifierKind.ext_id: "1"},
        occurred_at=fields.pop("occurred_at", at),  # type: ignore[arg-type]
        received_at=at,
        properties=fields.pop("properties", {"b": 1, "a": [1, 2]}),  # type: ignore[arg-type]
    )


def test_digest_ignores_ids_receipt_time_and_key_order() -> None:
    first = make_event("e1", T0)
    later = make_event("e2", T0 + timedelta(seconds=3), properties={"a": [1, 2], "b": 1})
    assert content_digest(first) == content_digest(later)
    assert content_digest(first) != content_digest(make_event("e3", T0, properties={"b": 2}))
    assert content_digest(first) != content_digest(make_event("e4", T0, name="b"))


def test_dated_events_differ_by_their_date() -> None:
    at = T0 + timedelta(minutes=1)
    one = make_event("e1", at, occurred_at=T0)
    other = make_event("e2", at, occurred_at=T0 + timedelta(seconds=1))
    assert content_digest(one) != content_digest(other)


def test_window_slides_and_entries_expire() -> None:
    recent = RecentEvents(timedelta(minutes=5))
    recent.add([("d", T0)])
    assert recent.seen("d", T0 + timedelta(minutes=5))
    assert not recent.seen("d", T0 + timedelta(minutes=5, seconds=1))
    recent.add([("e", T0 + timedelta(minutes=6))])  # eviction runs on add
    assert len(recent) == 1


def test_index_is_bounded() -> None:
    recent = RecentEvents(timedelta(minutes=5), max_entries=3)
    recent.add((f"d{n}", T0 + timedelta(seconds=n)) for n in range(5))
    assert len(recent) == 3
    assert not recent.seen("d0", T0 + timedelta(seconds=5))
    assert recent.seen("d4", T0 + timedelta(seconds=5))


def test_digest_is_the_sha256_of_the_canonical_json() -> None:
    event = make_event("e1", T0, properties={"é": [1, 2.5, None], "a": {"z": True, "b": "x"}})
    content = ["a", [["ext_id", "1"]], event.properties, {}, None, None, "api"]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert content_digest(event) == hashlib.sha256(text.encode()).hexdigest()


def test_identifiers_are_digested_in_kind_order_whatever_order_they_came_in() -> None:
    ids = {IdentifierKind.phone_id: "+331", IdentifierKind.email_id: "a@x.org"}
    event = make_event("e1", T0).model_copy(update={"identifiers": ids})
    reversed_ids = dict(reversed(list(ids.items())))
    again = make_event("e2", T0).model_copy(update={"identifiers": reversed_ids})
    content = ["a", [["email_id", "a@x.org"], ["phone_id", "+331"]], event.properties]
    text = json.dumps(
        [*content, {}, None, None, "api"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert (
        content_digest(event) == content_digest(again) == hashlib.sha256(text.encode()).hexdigest()
    )
