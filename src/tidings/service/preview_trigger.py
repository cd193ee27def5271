"""What the trigger makes of a preview's sample event: the run it starts, and why it might not.

A preview walks the workflow even when the sample event would not start it (another event name,
a false trigger condition, a disabled workflow): each of these is a note, so the author sees both
the messages and the reason the daemon would send none of them. A trigger condition or key that
cannot be evaluated is an error, as it is for the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.context import build_context, lookup
from tidings.engine.decision import Environment
from tidings.engine.history import History
from tidings.engine.triggers import run_id
from tidings.errors import ConditionError, TemplateError
from tidings.model.contacts import Contact
from tidings.model.events import Event
from tidings.model.runs import Run, RunStatus


@dataclass
class Start:
    """The run the sample event starts, with notes (it would not start) and errors."""

    run: Run
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def start_run(
    workflow: CompiledWorkflow,
    event: Event,
    contact: Contact,
    env: Environment,
    history: Sequence[Event],
) -> Start:
    """The run `event` would start for `contact`, as the engine's trigger builds it."""
    definition = workflow.definition
    notes: list[str] = []
    errors: list[str] = []
    if not definition.enabled:
        notes.append("the workflow is disabled (enabled: false)")
    if event.name not in definition.trigger.event:
        starts = ", ".join(definition.trigger.event)
        notes.append(f"{event.name} does not trigger this workflow (it starts on {starts})")
    context = build_context(
        contact=contact,
        event=event.template_view(),
        now=event.occurred_at,
        history=History(history, event.occurred_at, event),
    )
    for source in definition.trigger.if_:
        try:
            if not lookup(workflow.conditions, source).evaluate(context):
                notes.append(
                    f"the trigger condition {source!r} is false for this event: "
                    "the workflow would not start"
                )
        except ConditionError as exc:
            errors.append(f"trigger: {exc}")
    key = ""
    if definition.key is not None:
        try:
            key = env.templates.render_inline(
                definition.key, context, name=f"{definition.id}:key"
            ).strip()
        except TemplateError as exc:
            errors.append(f"key: {exc}")
    run = Run(
        id=run_id(definition.id, contact.id, key, event.id),
        workflow_id=definition.id,
        workflow_version=workflow.version,
        contact_id=contact.id,
        key=key,
        status=RunStatus.waiting,
        started_at=event.occurred_at,
        updated_at=event.occurred_at,
        trigger_event_id=event.id,
        event=event.template_view(),
        seq=1,
    )
    return Start(run, notes, errors)
