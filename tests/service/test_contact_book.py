"""Contacts resolved for a whole group in memory (`GroupContacts`, over the stores' bulk methods)
store exactly what resolving them event by event against the store (`StoreContacts`) stores."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from tidings.adapters.clock import ManualClock
from tidings.adapters.memory import MemoryStore
from tidings.model.contacts import Contact
from tidings.model.events import IdentifierKind
from tidings.ports import Store, UnitOfWork
from tidings.service import shapes
from tidings.service.contacts import GroupContacts, StoreContacts, contact_book
from tidings.service.ingest import IngestService, Outcome, Submission
from tidings.service.validation import parse_json

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
CONTACT_REF = re.compile(r"contact (\d+)")


class _OneAtATime:
    """A unit of work without the bulk contact methods (as a replay cache has none)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def __getattr__(self, name: str) -> Any:
        if name in ("find_contacts_many", "save_contacts"):
            raise AttributeError(name)
        return getattr(self._uow, name)


class OneAtATimeStore:
    """A store whose units of work offer no bulk contact methods."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        with self.store.transaction() as uow:
            yield _OneAtATime(uow)  # type: ignore[misc]


def counter(start: int = 1000) -> Callable[[], str]:
    ids = iter(range(start, start + 100_000))
    return lambda: str(next(ids))


def request(service: IngestService, *bodies: dict[str, Any], key: str | None = None) -> Submission:
    """One request: a single event, or a batch when given several bodies."""
    now = service.clock.now()
    if len(bodies) == 1:
        raw = json.dumps(bodies[0]).encode()
        events = [shapes.brevo_event(parse_json(raw), now=now, limits=service.limits)]
        return service.submission(events, key_id="k", body=raw, idempotency_key=key)
    raw = json.dumps({"events": list(bodies)}).encode()
    events = shapes.brevo_batch(parse_json(raw), now=now, limits=service.limits)
    return service.submission(events, key_id="k", body=raw, idempotency_key=key, batch=True)


def ann_id(store: Store) -> str:
    with store.transaction() as uow:
        [ann] = uow.find_contacts({IdentifierKind.email_id: "ann@x.org"})
    return ann.id


def scenario(store: Store) -> list[Outcome | Exception]:
    """Two groups whose events find, create, update and contest contacts."""
    service = IngestService(store, ManualClock(T0), new_contact_id=counter())
    first = service.write(
        [
            request(
                service,
                {
                    "event_name": "a",
                    "identifiers": {"email_id": "ann@x.org", "ext_id": "ann-1"},
                    "contact_properties": {"N": 1},
                },
            ),
            request(service, {"event_name": "b", "identifiers": {"ext_id": "bob"}}),
            # email_id (Ann) outranks ext_id (Bob): recorded on Ann, Bob's ext_id noted
            request(
                service,
                {"event_name": "c", "identifiers": {"email_id": "ann@x.org", "ext_id": "bob"}},
            ),
            request(
                service,
                {"event_name": "d", "identifiers": {"email_id": "cat@x.org"}},
                {"event_name": "d", "identifiers": {"email_id": "cat@x.org", "phone_id": "+331"}},
                {
                    "event_name": "d",
                    "identifiers": {"ext_id": "ann-1"},
                    "contact_properties": {"N": 2},
                },
            ),
            request(service, {"event_name": "e", "identifiers": {"contact_id": 999}}),
            request(service, {"event_name": "f", "identifiers": {"ext_id": "dan"}}, key="K"),
            request(service, {"event_name": "f", "identifiers": {"ext_id": "eve"}}, key="K"),
            request(
                service,
                {"event_name": "c", "identifiers": {"email_id": "ann@x.org", "ext_id": "bob"}},
            ),
        ]
    )
    ann = ann_id(store)
    second = service.write(
        [
            request(
                service,
                {"event_name": "g", "identifiers": {"phone_id": "+331", "email_id": "other@x.org"}},
            ),
            request(
                service,
                {
                    "event_name": "h",
                    "identifiers": {
                        "contact_id": int(ann),
                        "email_id": "cat@x.org",
                        "ext_id": "ann-2",
                    },
                    "contact_properties": {"N": True},
                },
            ),
            request(service, {"event_name": "i", "identifiers": {"whatsapp_id": "+332"}}, key="K"),
        ]
    )
    return first + second


def picture(store: Store, outcomes: list[Outcome | Exception]) -> dict[str, Any]:
    """What a user sees, with contact ids replaced by the identifiers each contact holds."""
    with store.transaction() as uow:
        events, _ = uow.list_events(limit=1000)
        contacts = {e.contact_id: uow.get_contact(e.contact_id or "") for e in events}
    names = {cid: _name(c) for cid, c in contacts.items() if cid is not None and c is not None}

    def rename(text: str) -> str:
        return CONTACT_REF.sub(lambda m: f"contact <{names.get(m.group(1), '?')}>", text)

    return {
        "events": [
            (
                e.name,
                names[e.contact_id or ""],
                {k.value: rename(v) for k, v in e.conflicts.items()},
            )
            for e in sorted(events, key=lambda e: e.seq or 0)
        ],
        "contacts": sorted((_name(c), c.attributes) for c in contacts.values() if c is not None),
        "outcomes": [
            rename(str(o))
            if isinstance(o, Exception)
            else (o.stored, o.duplicates, o.new_contacts, len(o.conflicts))
            for o in outcomes
        ],
    }


def _name(contact: Contact) -> str:
    return ",".join(sorted(f"{k.value}={v}" for k, v in contact.identifiers.items()))


def test_a_group_resolved_in_memory_stores_what_one_event_at_a_time_stores(store: Store) -> None:
    in_memory = picture(store, scenario(store))
    reference = MemoryStore()
    one_at_a_time = picture(reference, scenario(OneAtATimeStore(reference)))
    assert in_memory == one_at_a_time
    assert in_memory["events"][2] == (
        "c",
        "email_id=ann@x.org,ext_id=ann-1",
        {"ext_id": "belongs to contact <ext_id=bob>"},
    )
    assert in_memory["outcomes"][4] == "identifiers.contact_id: no contact with id 999"
    assert in_memory["outcomes"][6] == (0, 1, 1, 0)  # same Idempotency-Key: a repeat


def test_each_transaction_gets_the_book_its_unit_of_work_allows(store: Store) -> None:
    with store.transaction() as uow:
        assert isinstance(contact_book(uow, [], counter()), GroupContacts)
        assert isinstance(contact_book(_OneAtATime(uow), [], counter()), StoreContacts)  # type: ignore[arg-type]


@pytest.mark.parametrize("one_at_a_time", [False, True], ids=["group", "one at a time"])
def test_new_contact_ids_skip_those_taken(store: Store, one_at_a_time: bool) -> None:
    with store.transaction() as uow:
        uow.save_contact(Contact(id="7", created_at=T0, updated_at=T0))
    ids = iter(["7", "7", "8", "9"])
    target = OneAtATimeStore(store) if one_at_a_time else store
    service = IngestService(target, ManualClock(T0), new_contact_id=lambda: next(ids))
    body = {"event_name": "a", "identifiers": {"ext_id": "new"}}
    [outcome] = service.write([request(service, body)])
    assert not isinstance(outcome, Exception)
    assert [e.contact_id for e in outcome.events] == ["8"]
    assert next(ids) == "9"  # no id drawn beyond the one used
