"""The context conditions and templates are evaluated with, and how conditions are looked up.

Every context has `contact` (the contact's attributes and identifiers), `event` (the trigger
event, or the one a `wait_for` received; for goals, `wait_for` matching and triggers it is the
event being processed), `params` (the event's properties, Brevo's name for them), `now`, and the
history helpers `has_event`, `count_events`, `last_event`. Contexts built for a run also have
`run` (id, key, started_at, workflow, position); a trigger's conditions and its `key` are
evaluated before any run exists, so `run` is absent there and using it is an error.
Email and SMS contexts add `unsubscribe_url` (None for transactional messages and previews).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from tidings.compile.conditions import Condition, compile_condition
from tidings.engine.history import History
from tidings.model.contacts import Contact
from tidings.model.runs import Run


def build_context(
    *,
    contact: Contact,
    event: Mapping[str, Any],
    now: datetime,
    history: History,
    run: Run | None = None,
) -> dict[str, Any]:
    """The names a condition or template sees (see the module docstring)."""
    event = dict(event)
    if isinstance(event.get("date"), str):  # a run's stored snapshot: give templates a datetime
        event["date"] = datetime.fromisoformat(event["date"])
    context: dict[str, Any] = {
        "contact": contact.template_view(),
        "event": event,
        "params": event.get("properties") or {},
        "now": now,
        **history.helpers(),
    }
    if run is not None:
        context["run"] = run.template_view()
    return context


@cache
def _compiled(source: str) -> Condition:
    """Compile a condition the loader did not hand over (tests, older compiled workflows)."""
    return compile_condition(source)


def lookup(conditions: Mapping[str, Condition], source: str) -> Condition:
    """The compiled condition for an expression's source text; compiles it when missing."""
    found = conditions.get(source)
    return found if found is not None else _compiled(source)


def all_hold(
    conditions: Mapping[str, Condition], sources: Sequence[str], context: Mapping[str, Any]
) -> bool:
    """Whether every condition holds (True for none); stops at the first false one.

    Raises ConditionError when one cannot be evaluated.
    """
    return all(lookup(conditions, source).evaluate(context) for source in sources)
