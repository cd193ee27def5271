"""The pure core: an event or a timer, the contact's state and `now` in; a Decision out.

No I/O, no clock, no randomness: the same input gives the same Decision, ids and keys
included, so a retried transaction or a `simulate` replay decides exactly the same.

`on_event` handles one event about one contact, in three stages:
1. exit goals: each active run (waiting or queued) of a workflow whose `exit` goal matches
   ends with Outcome.exited_goal. Only events dated at or after the run's trigger event (or
   its `started_at`, whichever is earlier) are goals for it: an older event (e.g. imported
   late) is history, not a goal reached during the run. Queued runs are exited before active
   ones, so no queued run starts only to be exited.
2. `wait_for`: each run waiting for this event name whose conditions hold resumes into its
   `on_event` branch, with this event as its `event`. The event counts when it is dated at or
   after the moment the wait began, or was received in that same instant (a run that began
   waiting while this very event was being ingested). An event from before the wait began
   does not resume it: authors test history with `has_event` before the `wait_for`.
3. triggers (see `tidings.engine.triggers`).

`workflows` may hold several versions of one workflow id: a run is advanced with the entry of
its own version when present, else with the first entry of its id; triggers use the first entry
of each id (list the current version first). Runs of a workflow absent from the list are left
untouched.

`on_timer` fires a waiting run's timer. It is a no-op (empty Decision) for a run that is not
waiting or not yet due, so a timer delivered twice never advances a run twice. Late timers
follow the workflow's `late` policy: `send` carries on (a `late` trace records lateness of a
second or more; sub-second jitter is not lateness); `skip` carries on but skips the sends up to
the next wait when the timer is later than `late.limit` (DEFAULT_LATE_LIMIT when unset).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.decision import ContactState, Decision, Draft, Environment
from tidings.engine.goals import goal_horizon, goal_reached
from tidings.engine.positions import PositionError, step_at
from tidings.engine.runner import WAIT_STARTED, Runner
from tidings.engine.triggers import apply_trigger
from tidings.model.durations import format_duration
from tidings.model.events import Event
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceKind
from tidings.model.workflow import Goal, LatePolicy, WaitForStep

__all__ = ["ContactState", "Decision", "Environment", "on_event", "on_timer"]

DEFAULT_LATE_LIMIT = timedelta(hours=1)
"""How late a timer may fire under `late: {policy: skip}` with no `limit`."""

LATE_NOTICE = timedelta(seconds=1)
"""Lateness below this is scheduling jitter and is not traced."""


def on_event(
    workflows: Sequence[CompiledWorkflow],
    state: ContactState,
    event: Event,
    now: datetime,
    env: Environment,
) -> Decision:
    """Apply one event about `state.contact`: exit goals, then `wait_for`s, then triggers."""
    draft = Draft(state, now, env, current=event)
    _exit_goals(draft, workflows, event)
    _resume_waiters(draft, workflows, event)
    seen: set[str] = set()
    for workflow in workflows:
        if workflow.id not in seen:
            seen.add(workflow.id)
            apply_trigger(draft, workflow, event)
    return draft.build()


def on_timer(
    workflow: CompiledWorkflow, run: Run, state: ContactState, now: datetime, env: Environment
) -> Decision:
    """Fire the timer of a waiting run that is due (an empty Decision otherwise)."""
    if run.workflow_id != workflow.id:
        raise ValueError(f"run {run.id} belongs to {run.workflow_id}, not {workflow.id}")
    if run.status is not RunStatus.waiting or run.due_at is None or run.due_at > now:
        return Decision()
    draft = Draft(state, now, env)
    late_by = now - run.due_at
    skip_reason: str | None = None
    if late_by >= LATE_NOTICE:
        policy = workflow.definition.late
        limit = policy.limit if policy.limit is not None else DEFAULT_LATE_LIMIT
        late = format_duration(late_by)
        if policy.policy is LatePolicy.skip and late_by > limit:
            skip_reason = f"late by {late}"
            message = f"timer late by {late} (limit {format_duration(limit)}): sends skipped"
        else:
            message = f"timer late by {late}: carrying on"
        draft.note(
            TraceKind.late,
            message,
            workflow_id=run.workflow_id,
            run=run,
            step=run.position,
            late_by_s=int(late_by.total_seconds()),
            policy=policy.policy.value,
        )
    Runner(draft, workflow).resume_on_timer(run, skip_reason)
    return draft.build()


def _workflow_for(workflows: Sequence[CompiledWorkflow], run: Run) -> CompiledWorkflow | None:
    """The workflow a run advances with: its own version, else the first of its id."""
    same_id = [w for w in workflows if w.id == run.workflow_id]
    exact = [w for w in same_id if w.version == run.workflow_version]
    found = exact or same_id
    return found[0] if found else None


def _exit_goals(draft: Draft, workflows: Sequence[CompiledWorkflow], event: Event) -> None:
    """Stage 1: end every active run whose workflow has a goal this event reaches."""
    reached: list[tuple[CompiledWorkflow, Run, Goal]] = []
    for run in draft.active_runs():
        workflow = _workflow_for(workflows, run)
        if workflow is None or event.occurred_at < goal_horizon(run):
            continue
        goal = goal_reached(draft, workflow, run, event)
        if goal is not None:
            reached.append((workflow, run, goal))
    reached.sort(key=lambda item: item[1].status is not RunStatus.queued)
    for workflow, run, goal in reached:
        current = next((r for r in draft.runs() if r.id == run.id), run)
        if not current.is_active:
            continue
        reason = goal.reason or f"goal reached: {event.name}"
        Runner(draft, workflow).finish(current, Outcome.exited_goal, reason)


def _resume_waiters(draft: Draft, workflows: Sequence[CompiledWorkflow], event: Event) -> None:
    """Stage 2: resume every run waiting for this event whose conditions hold."""
    for run in draft.active_runs():
        if run.status is not RunStatus.waiting or event.name not in run.waiting_for:
            continue
        workflow = _workflow_for(workflows, run)
        if workflow is None or not _after_wait_began(run, event):
            continue
        try:
            step = step_at(workflow.definition.steps, run.position)
        except PositionError:
            continue
        if not isinstance(step, WaitForStep):
            continue
        runner = Runner(draft, workflow)
        if runner.wait_for_holds(run, step, event):
            runner.resume_on_event(run, event)


def _after_wait_began(run: Run, event: Event) -> bool:
    """Whether the event counts for a wait: dated at/after its start, or received that instant."""
    raw = run.vars.get(WAIT_STARTED)
    began = datetime.fromisoformat(raw) if isinstance(raw, str) else run.updated_at
    return event.occurred_at >= began or event.received_at == began
