"""Exit goals: does an event end a run, and was a new run's goal already met before it began.

A goal counts for a run when the event is dated at or after the run's horizon: the trigger
event's date, or the run's `started_at` when that is earlier (client clocks and processing lag
aside). An older event is history, not a goal reached during the run.

A trigger can arrive late: the contact's order, dated 10:10, is applied before the cart event
dated 10:00 that should have started the abandoned-cart run. Applied in event-time order the
order would have ended that run, so a run that starts (or is queued) finds its goal already met
when one of `ContactState.applied_after` reaches it: it ends at once with Outcome.exited_goal,
before its first step, and the trace names the event, its date and that it came first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.context import all_hold, build_context
from tidings.engine.decision import Draft
from tidings.errors import ConditionError
from tidings.model.events import Event
from tidings.model.runs import Run
from tidings.model.trace import TraceKind
from tidings.model.workflow import Goal

TRIGGERED_AT = "triggered_at"
"""Run var: the trigger event's own date; goals dated before it are history, not goals."""


@dataclass(frozen=True)
class GoalMet:
    """A goal a new run had reached before it began, and the event that reached it."""

    goal: Goal
    event: Event

    @property
    def reason(self) -> str:
        """The run's reason, as when the goal event arrives during the run."""
        return self.goal.reason or f"goal reached: {self.event.name}"

    @property
    def detail(self) -> str:
        """Why the run ended before its first step."""
        dated = self.event.occurred_at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        return (
            f"exit goal met by {self.event.name} ({self.event.id}) dated {dated}, "
            "received before this trigger"
        )


def goal_horizon(run: Run) -> datetime:
    """The earliest event date that counts as a goal for this run."""
    raw = run.vars.get(TRIGGERED_AT)
    triggered = datetime.fromisoformat(raw) if isinstance(raw, str) else run.started_at
    return min(triggered, run.started_at)


def goal_reached(draft: Draft, workflow: CompiledWorkflow, run: Run, event: Event) -> Goal | None:
    """The first exit goal of the workflow this event reaches for this run, if any."""
    context = build_context(
        contact=draft.contact,
        event=event.template_view(),
        now=draft.now,
        history=draft.history,
        run=run,
    )
    for goal in workflow.definition.exit:
        if event.name not in goal.event:
            continue
        try:
            if all_hold(workflow.conditions, goal.if_, context):
                return goal
        except ConditionError as exc:
            draft.note(TraceKind.error, f"exit goal: {exc}", workflow_id=run.workflow_id, run=run)
    return None


def goal_already_met(draft: Draft, workflow: CompiledWorkflow, run: Run) -> GoalMet | None:
    """The earliest event applied before this run's trigger that already reached its goal."""
    if not workflow.definition.exit:
        return None
    names = {name for goal in workflow.definition.exit for name in goal.event}
    horizon = goal_horizon(run)
    candidates = sorted(
        (
            e
            for e in draft.state.applied_after
            if e.name in names and e.occurred_at >= horizon and e.id != run.trigger_event_id
        ),
        key=lambda e: (e.occurred_at, e.seq or 0),
    )
    for event in candidates:
        goal = goal_reached(draft, workflow, run, event)
        if goal is not None:
            return GoalMet(goal, event)
    return None
