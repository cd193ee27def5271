"""Triggers: does an event start a run of a workflow, under which key, and may it start now.

For one enabled workflow whose trigger names the event, in this order:
1. the trigger's conditions must all hold (else `trigger_skipped`);
2. the key is the rendered `key` template, stripped ("" when the workflow has none);
3. re-entry: with `allowed: false` a contact and key never run the workflow twice; with a
   `cooldown` a new run may not start sooner than that after the last run started (active or
   finished, stored or created earlier in this decision);
4. mode, per contact and key: `single` keeps the active run and ignores the trigger; `restart`
   ends the active run(s) (Outcome.restarted) and starts anew; `queued` adds a queued run that
   starts when the active one finishes, at most `max` waiting in line; `parallel` starts a run
   unless `max` are already active.
Every refusal is a `trigger_skipped` trace entry with the reason. A run started or queued
whose exit goal an event applied earlier already reached (a late trigger, see
`tidings.engine.goals`) ends at once with Outcome.exited_goal, before its first step.

Decisions:
- Run ids are deterministic: the first 20 hex digits of sha256 over the workflow id, contact id,
  key and trigger event id. An event processed a second time finds its run already exists and
  is skipped ("already started"), so a retried decision never forks a run.
- A trigger condition or key that cannot be evaluated is an `error` trace and starts nothing.
- Re-entry is checked before mode, so `allowed: false` also refuses a `restart` or a queued run.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.context import all_hold
from tidings.engine.decision import Draft
from tidings.engine.goals import TRIGGERED_AT, goal_already_met
from tidings.engine.runner import Runner
from tidings.errors import ConditionError, TemplateError
from tidings.model.durations import format_duration
from tidings.model.events import Event
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceKind
from tidings.model.workflow import Mode

RUN_ID_HEX = 20


def run_id(workflow_id: str, contact_id: str, key: str, event_id: str) -> str:
    """The deterministic id of the run an event starts for a contact and key."""
    material = "\x1f".join((workflow_id, contact_id, key, event_id)).encode("utf-8")
    return hashlib.sha256(material).hexdigest()[:RUN_ID_HEX]


def apply_trigger(draft: Draft, workflow: CompiledWorkflow, event: Event) -> None:
    """Start, queue or skip a run of `workflow` for this event (see the module docstring)."""
    definition = workflow.definition
    if not definition.enabled or event.name not in definition.trigger.event:
        return
    context = draft.context(event.template_view())

    def skip(reason: str, **data: object) -> None:
        _skip(draft, definition.id, event, reason, **data)

    try:
        if not all_hold(workflow.conditions, definition.trigger.if_, context):
            skip("a trigger condition is false", conditions=list(definition.trigger.if_))
            return
    except ConditionError as exc:
        draft.note(TraceKind.error, str(exc), workflow_id=definition.id, event_id=event.id)
        return
    key = ""
    if definition.key is not None:
        try:
            key = draft.env.templates.render_inline(
                definition.key, context, name=f"{definition.id}:key"
            ).strip()
        except TemplateError as exc:
            draft.note(TraceKind.error, f"key: {exc}", workflow_id=definition.id, event_id=event.id)
            return
    new_id = run_id(definition.id, draft.contact.id, key, event.id)
    if any(run.id == new_id for run in (*draft.runs(), *draft.state.last_runs)):
        skip(f"this event already started run {new_id}", key=key)
        return
    draft.note(
        TraceKind.trigger_matched,
        f"{event.name} matched the trigger of {definition.id} (key {key!r})",
        workflow_id=definition.id,
        event_id=event.id,
        key=key,
    )
    refusal = _reentry_refusal(draft, workflow, key)
    if refusal is not None:
        skip(refusal, key=key)
        return
    run = Run(
        id=new_id,
        workflow_id=definition.id,
        workflow_version=workflow.version,
        contact_id=draft.contact.id,
        key=key,
        status=RunStatus.queued,
        started_at=draft.now,
        updated_at=draft.now,
        trigger_event_id=event.id,
        event=event.snapshot(),
        vars={TRIGGERED_AT: event.occurred_at.isoformat()},
    )
    _apply_mode(draft, workflow, run, event)


def _reentry_refusal(draft: Draft, workflow: CompiledWorkflow, key: str) -> str | None:
    """Why re-entry rules refuse a new run for this key, or None."""
    reentry = workflow.definition.reentry
    last = draft.last_started(workflow.id, key)
    if last is None:
        return None
    if not reentry.allowed:
        return f"re-entry is not allowed and run {last.id} already ran for key {key!r}"
    if reentry.cooldown is not None and draft.now - last.started_at < reentry.cooldown:
        until = (last.started_at + reentry.cooldown).isoformat()
        return (
            f"in cooldown ({format_duration(reentry.cooldown)} after run {last.id} started) "
            f"until {until}"
        )
    return None


def _apply_mode(draft: Draft, workflow: CompiledWorkflow, run: Run, event: Event) -> None:
    """Apply the workflow's mode to a new run and start, queue or refuse it."""
    definition = workflow.definition

    def skip(reason: str, **data: object) -> None:
        _skip(draft, definition.id, event, reason, key=run.key, **data)

    runner = Runner(draft, workflow)
    active = draft.active_runs(definition.id, run.key)
    met = goal_already_met(draft, workflow, run)
    mode = definition.mode
    if mode is Mode.single and active:
        skip(f"run {active[0].id} is already active for this key (mode single)")
        return
    if mode is Mode.restart:
        for old in active:
            runner.finish(old, Outcome.restarted, f"restarted by {event.name} ({event.id})")
    if mode is Mode.queued and active:
        queued = [r for r in active if r.status is RunStatus.queued]
        if len(queued) >= definition.max:
            skip(f"{len(queued)} runs already queued for this key (max {definition.max})")
            return
        draft.save(run)
        draft.note(
            TraceKind.run_queued,
            f"run queued behind run {active[0].id} (key {run.key!r})",
            workflow_id=definition.id,
            run=run,
            key=run.key,
        )
        if met is not None:
            runner.finish(run, Outcome.exited_goal, met.reason, detail=met.detail)
        return
    if mode is Mode.parallel and len(active) >= definition.max:
        skip(f"{len(active)} runs already active for this key (max {definition.max})")
        return
    runner.start(run, met)


def _skip(draft: Draft, workflow_id: str, event: Event, reason: str, **data: Any) -> None:
    """Trace a trigger that matched by name but did not start a run, and why."""
    draft.note(
        TraceKind.trigger_skipped,
        f"{event.name} did not start {workflow_id}: {reason}",
        workflow_id=workflow_id,
        event_id=event.id,
        **data,
    )
