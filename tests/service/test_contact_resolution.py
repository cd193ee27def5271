"""The contact rule, as a table: who an event belongs to, what is attached, what is noted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.trace import TraceKind
from tidings.service.contacts import (
    conflict_trace,
    merged_attributes,
    random_contact_id,
    resolve,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
K = IdentifierKind


def contact(cid: str, **identifiers: str) -> Contact:
    return Contact(
        id=cid,
        identifiers={K(k): v for k, v in identifiers.items()},
        attributes={"N": 1},
        created_at=T0,
        updated_at=T0,
    )


def make_event(**identifiers: str) -> Event:
    return Event(
        id="e1",
        name="seen",
        identifiers={K(k): v for k, v in identifiers.items()},
        occurred_at=T0,
        received_at=T0,
    )


ANN = contact("1", email_id="ann@x.org")
BOB = contact("2", ext_id="bob", phone_id="+336")


@pytest.mark.parametrize(
    ("event_ids", "known", "winner", "is_new", "identifiers", "conflicts"),
    [
        ({"email_id": "new@x.org"}, [], "new", True, {"email_id": "new@x.org"}, {}),
        ({"email_id": "ann@x.org"}, [ANN], "1", False, {"email_id": "ann@x.org"}, {}),
        (
            {"email_id": "ann@x.org", "ext_id": "ann-1"},
            [ANN],
            "1",
            False,
            {"email_id": "ann@x.org", "ext_id": "ann-1"},
            {},
        ),
        # email (priority 2) beats ext_id (priority 3); Bob keeps his ext_id
        (
            {"ext_id": "bob", "email_id": "ann@x.org"},
            [ANN, BOB],
            "1",
            False,
            {"email_id": "ann@x.org"},
            {"ext_id": "belongs to contact 2"},
        ),
        # contact_id beats everything
        (
            {"contact_id": "2", "email_id": "ann@x.org"},
            [ANN, BOB],
            "2",
            False,
            {"ext_id": "bob", "phone_id": "+336"},
            {"email_id": "belongs to contact 1"},
        ),
        # identifiers nobody holds, of kinds the winner lacks, are attached
        (
            {"ext_id": "bob", "email_id": "bob@x.org", "whatsapp_id": "+337"},
            [BOB],
            "2",
            False,
            {"ext_id": "bob", "phone_id": "+336", "email_id": "bob@x.org", "whatsapp_id": "+337"},
            {},
        ),
        # the winner already holds another value of that kind: kept, the new one noted
        (
            {"phone_id": "+336", "ext_id": "robert"},
            [BOB],
            "2",
            False,
            {"ext_id": "bob", "phone_id": "+336"},
            {"ext_id": "contact 2 already has ext_id 'bob'"},
        ),
    ],
    ids=[
        "new",
        "found",
        "attach",
        "email over ext_id",
        "contact_id first",
        "attach other kind",
        "kind already held",
    ],
)
def test_resolution_rule(
    event_ids: dict[str, str],
    known: list[Contact],
    winner: str,
    is_new: bool,
    identifiers: dict[str, str],
    conflicts: dict[str, str],
) -> None:
    result = resolve(
        make_event(**event_ids), {c.id: c for c in known}, now=T0, new_id=lambda: "new"
    )
    assert (result.contact.id, result.is_new) == (winner, is_new)
    assert {k.value: v for k, v in result.contact.identifiers.items()} == identifiers
    assert {k.value: v for k, v in result.conflicts.items()} == conflicts


@pytest.mark.parametrize(
    ("event_ids", "messages"),
    [
        ({"email_id": "ann@x.org"}, []),
        (
            {"ext_id": "bob", "email_id": "ann@x.org"},
            [
                "event seen (e1): ext_id 'bob' not attached (belongs to contact 2); the event "
                "was recorded on contact 1, which holds its first known identifier "
                "(email_id 'ann@x.org'); nothing was moved or merged"
            ],
        ),
        (
            {"phone_id": "+336", "ext_id": "robert"},
            [
                "event seen (e1): ext_id 'robert' not attached (contact 2 already has ext_id "
                "'bob'); the event was recorded on contact 2, which holds its first known "
                "identifier (phone_id '+336'); nothing was moved or merged"
            ],
        ),
    ],
    ids=["no conflict", "held by another contact", "kind already held"],
)
def test_conflicts_are_traced_on_the_winner_with_the_rule(
    event_ids: dict[str, str], messages: list[str]
) -> None:
    event = make_event(**event_ids)
    result = resolve(event, {"1": ANN, "2": BOB}, now=T0, new_id=lambda: "new")
    trace = conflict_trace(event, result)
    assert [entry.message for entry in trace] == messages
    assert {(e.contact_id, e.workflow_id, e.kind, e.at) for e in trace} <= {
        (result.contact.id, "*", TraceKind.conflict, T0)
    }


@pytest.mark.parametrize(
    ("current", "updates", "expected"),
    [
        ({}, {"A": 1}, {"A": 1}),
        ({"A": 1}, {"A": True}, {"A": True}),  # 1 == True, yet the type changed
        ({"A": 1.0}, {"A": 1}, {"A": 1}),
        ({"A": "x", "B": 2}, {"B": "2"}, {"A": "x", "B": "2"}),
    ],
)
def test_attributes_keep_json_types(
    current: dict[str, Any], updates: dict[str, Any], expected: dict[str, Any]
) -> None:
    merged = merged_attributes(current, updates)
    assert merged == expected
    assert [type(v) for v in merged.values()] == [type(v) for v in expected.values()]


def test_unchanged_contact_is_not_rewritten() -> None:
    result = resolve(make_event(email_id="ann@x.org"), {"1": ANN}, now=T0, new_id=lambda: "x")
    assert result.changed is False


def test_random_contact_ids_fit_javascript_numbers() -> None:
    ids = {int(random_contact_id()) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(0 < i < 2**53 for i in ids)
