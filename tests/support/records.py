"""Factories for what the store keeps: events, contacts, runs and trace entries (messages: see
`support.messages`). Each takes a number to vary ids and any field as an override."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from support.messages import T0
from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.runs import Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind


def make_event(n: int = 1, **overrides: Any) -> Event:
    """`cart_updated` for contact-{n}, occurring `n` minutes after T0."""
    fields: dict[str, Any] = {
        "id": f"event-{n}",
        "name": "cart_updated",
        "identifiers": {IdentifierKind.email_id: f"user{n}@example.org"},
        "occurred_at": T0 + timedelta(minutes=n),
        "received_at": T0 + timedelta(minutes=n, seconds=1),
        "properties": {"cart_id": f"cart-{n}", "total": 10.5 * n},
        "contact_id": f"contact-{n}",
    }
    fields.update(overrides)
    return Event(**fields)


def make_contact(n: int = 1, **overrides: Any) -> Contact:
    """contact-{n} with an email identifier, created `n` minutes after T0."""
    fields: dict[str, Any] = {
        "id": f"contact-{n}",
        "identifiers": {IdentifierKind.email_id: f"user{n}@example.org"},
        "attributes": {"FIRSTNAME": f"Ada{n}"},
        "created_at": T0 + timedelta(minutes=n),
        "updated_at": T0 + timedelta(minutes=n),
    }
    fields.update(overrides)
    return Contact(**fields)


def make_run(n: int = 1, **overrides: Any) -> Run:
    """run-{n} of `abandoned_cart` for contact-1, waiting until `n` hours after T0."""
    fields: dict[str, Any] = {
        "id": f"run-{n}",
        "workflow_id": "abandoned_cart",
        "workflow_version": "v1",
        "contact_id": "contact-1",
        "key": f"cart-{n}",
        "status": RunStatus.waiting,
        "position": "1",
        "due_at": T0 + timedelta(hours=n),
        "started_at": T0 + timedelta(minutes=n),
        "updated_at": T0 + timedelta(minutes=n),
        "trigger_event_id": f"event-{n}",
        "event": {"name": "cart_updated", "properties": {"cart_id": f"cart-{n}"}},
    }
    fields.update(overrides)
    return Run(**fields)


def make_trace(n: int = 1, **overrides: Any) -> TraceEntry:
    """A `wait` decision for contact-1 in `abandoned_cart`, `n` seconds after T0."""
    fields: dict[str, Any] = {
        "at": T0 + timedelta(seconds=n),
        "contact_id": "contact-1",
        "workflow_id": "abandoned_cart",
        "run_id": "run-1",
        "step": "0",
        "kind": TraceKind.wait,
        "message": f"decision {n}",
        "data": {"n": n},
    }
    fields.update(overrides)
    return TraceEntry(**fields)
