"""Exit goals: does an event end a run, and was a new run's goal already met before it began.

A goal counts for a run when the event is dated at or after the run's horizon: the trigger
event's date, or the run's `started_at` when that is earlier (client clocks and processing lag
aside). An older event is history, not a goal reached during the run.

A trigger can arrive late: the contact's order, dated 10:10, is applied before the cart event
dated 10:00 that should have started the abandoned-cart run. Applied in event-time order the
order would have ended that run, so a run that starts (or is queued) finds its goal already met
when one of `ContactState.applied_after` reaches it: it ends at once with Outcome.exited_goal,
before its first step, and the trace names the event, its date and that it came first.

A run that ended on its own (walked off its steps, an `exit` step) no longer has goals, yet a
marketing message it queued may still wait in the outbox. `goal_met_for_ended_run` tells the
delivery worker whether an event reaches one of that run's goals, judged exactly as for a
waiting run: same horizon, same conditions, the run's key and context (see `service.recall`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.context import all_hold
from tidings.engine.decision import ContactState, Draft, Environment
from tidings.errors import ConditionError
from tidings.model.events import Event
from tidings.model.runs import Run
from tidings.model.trace import TraceEntry, TraceKind
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
    context = draft.context(event.template_view(), run)
    for goal in workflow.definition.exit:
        if event.name not in goal.event:
            continue
        try:
            if all_hold(workflow.conditions, goal.if_, context):
                return goal
        except ConditionError as exc:
            draft.note(TraceKind.error, f"exit goal: {exc}", workflow_id=run.workflow_id, run=run)
    return None


def goal_names(workflow: CompiledWorkflow) -> frozenset[str]:
    """The event names any of the workflow's exit goals listens for."""
    return frozenset(name for goal in workflow.definition.exit for name in goal.event)


def _candidates(workflow: CompiledWorkflow, run: Run, events: Iterable[Event]) -> list[Event]:
    """The events that may be goals for this run (name, horizon, not its trigger), in date order."""
    names = goal_names(workflow)
    horizon = goal_horizon(run)
    return sorted(
        (
            e
            for e in events
            if e.name in names and e.occurred_at >= horizon and e.id != run.trigger_event_id
        ),
        key=lambda e: (e.occurred_at, e.seq or 0),
    )


def goal_already_met(draft: Draft, workflow: CompiledWorkflow, run: Run) -> GoalMet | None:
    """The earliest event applied before this run's trigger that already reached its goal."""
    if not workflow.definition.exit:
        return None
    for event in _candidates(workflow, run, draft.state.applied_after):
        goal = goal_reached(draft, workflow, run, event)
        if goal is not None:
            return GoalMet(goal, event)
    return None


def goal_met_for_ended_run(
    state: ContactState,
    workflow: CompiledWorkflow,
    run: Run,
    events: Iterable[Event],
    *,
    now: datetime,
    env: Environment,
) -> tuple[GoalMet | None, list[TraceEntry]]:
    """The earliest of these events that reaches an exit goal of this ended run, and the
    trace of conditions that could not be evaluated.

    Each event is judged as the core judges it for a waiting run when that event is processed
    (the event as `event` and as the decision's current event, the run as `run`, `now`).
    """
    notes: list[TraceEntry] = []
    for event in _candidates(workflow, run, events):
        draft = Draft(state, now, env, current=event)
        goal = goal_reached(draft, workflow, run, event)
        notes.extend(draft.build().trace)
        if goal is not None:
            return GoalMet(goal, event), notes
    return None, notes
