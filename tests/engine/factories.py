"""Factories for the engine's tests: contacts, events, states, and trace readers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tidings.engine.core import ContactState, Decision
from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.runs import Run
from tidings.model.trace import TraceKind

T0 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)  # a Monday, 12:00 in Paris


def make_contact(**overrides: Any) -> Contact:
    """Ann, in Paris, with an email address and a mobile number."""
    fields: dict[str, Any] = {
        "id": "c1",
        "identifiers": {
            IdentifierKind.email_id: "ann@example.com",
            IdentifierKind.phone_id: "+33612345678",
        },
        "attributes": {"FIRSTNAME": "Ann"},
        "timezone": "Europe/Paris",
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Contact(**fields)


def make_event(
    name: str,
    at: datetime = T0,
    *,
    id: str | None = None,
    received_at: datetime | None = None,
    **properties: Any,
) -> Event:
    """An event about Ann; its id is derived from its name, time and properties unless given."""
    return Event(
        id=id or f"{name}@{at.isoformat()}#{sorted(properties.items())!r}",
        name=name,
        identifiers={IdentifierKind.email_id: "ann@example.com"},
        occurred_at=at,
        received_at=received_at or at,
        properties=properties,
        contact_id="c1",
    )


def make_state(
    *,
    contact: Contact | None = None,
    runs: Sequence[Run] = (),
    last_runs: Sequence[Run] = (),
    history: Sequence[Event] = (),
    applied_after: Sequence[Event] = (),
) -> ContactState:
    """Ann's state: her active runs, last runs, history and events applied out of order."""
    return ContactState(
        contact=contact or make_contact(),
        runs=list(runs),
        last_runs=list(last_runs),
        history=list(history),
        applied_after=list(applied_after),
    )


def kinds(decision: Decision) -> list[TraceKind]:
    """The kinds of the decision's trace entries, in order."""
    return [entry.kind for entry in decision.trace]


def messages_of(decision: Decision, kind: TraceKind) -> list[str]:
    """The messages of the trace entries of one kind."""
    return [entry.message for entry in decision.trace if entry.kind is kind]


def run_of(decision: Decision, workflow_id: str | None = None) -> Run:
    """The one run (of a workflow) the decision created or changed."""
    runs = [r for r in decision.runs if workflow_id is None or r.workflow_id == workflow_id]
    assert len(runs) == 1, runs
    return runs[0]


def after(state: ContactState, decision: Decision, *events: Event) -> ContactState:
    """The state once a decision is applied (as the store would), plus newly stored events."""
    runs = {run.id: run for run in state.runs}
    last = {(run.workflow_id, run.key): run for run in state.last_runs}
    for run in decision.runs:
        runs[run.id] = run
        previous = last.get((run.workflow_id, run.key))
        if previous is None or previous.started_at <= run.started_at:
            last[(run.workflow_id, run.key)] = run
    return ContactState(
        contact=decision.contact or state.contact,
        runs=[run for run in runs.values() if run.is_active],
        last_runs=list(last.values()),
        history=[*state.history, *events],
    )
