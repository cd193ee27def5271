"""Runs in flight when a new version of their workflow is loaded: the `in_flight` policy, pure.

The new version decides (`in_flight` is read from the version being loaded, not from the one a
run started on), for each run of this contact waiting on any other version of the workflow:
- `keep`: nothing; the run carries on with the version it started with.
- `cancel`: the run ends with Outcome.cancelled and a reason naming both versions.
- `upgrade`: the run moves to the new version when its position names a step of the same kind
  there (a `wait` for a run waiting on a timer, a `wait_for` for one waiting for an event). Its
  timer keeps the due time it was armed with; a `wait_for` now awaits the new step's events
  with its conditions. Otherwise (no such step, or another kind) it is cancelled, and the
  reason says why. A run waits only at a `wait` or a `wait_for`, and only a `wait_for` awaits
  events, so the kind of the step it waits at is known without the old definition.

Ending a run lets the next queued run of its key start, on the new version, in the same
decision (`Runner.finish`). Queued runs have not started: they are left in line and start on
whichever version ends the run before them.

The same input gives the same Decision, and a run already cancelled or on the new version is
not touched again, so applying the policy twice changes nothing the second time.
"""

from __future__ import annotations

from datetime import datetime

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.decision import ContactState, Decision, Draft, Environment
from tidings.engine.positions import PositionError, step_at
from tidings.engine.runner import Runner
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceKind
from tidings.model.workflow import InFlight, WaitForStep, step_kind


def on_new_version(
    workflow: CompiledWorkflow, state: ContactState, now: datetime, env: Environment
) -> Decision:
    """Apply `workflow`'s `in_flight` policy to this contact's runs on its other versions."""
    policy = workflow.definition.in_flight
    if policy is InFlight.keep:
        return Decision()
    draft = Draft(state, now, env)
    runner = Runner(draft, workflow)
    for run in [r for r in draft.active_runs(workflow.id) if on_other_version(r, workflow)]:
        current = next((r for r in draft.runs() if r.id == run.id), run)
        if not current.is_active:
            continue
        refused = upgrade_refused(current, workflow) if policy is InFlight.upgrade else ""
        if policy is InFlight.upgrade and not refused:
            _upgrade(draft, current, workflow)
            continue
        reason = f"version {current.workflow_version} replaced by {workflow.version}"
        runner.finish(current, Outcome.cancelled, f"{reason}{refused} (in_flight: {policy})")
    return draft.build()


def on_other_version(run: Run, workflow: CompiledWorkflow) -> bool:
    """Whether the policy applies to this run: it waits on another version of `workflow`."""
    return (
        run.workflow_id == workflow.id
        and run.status is RunStatus.waiting
        and run.workflow_version != workflow.version
    )


def upgrade_refused(run: Run, workflow: CompiledWorkflow) -> str:
    """Why this run cannot move to `workflow` (`: ...`), or "" when it can."""
    waits_at = "wait_for" if run.waiting_for else "wait"
    try:
        found = step_kind(step_at(workflow.definition.steps, run.position))
    except PositionError:
        return f": it waits at a {waits_at} at step {run.position}, which no longer exists"
    if found != waits_at:
        return f": it waits at a {waits_at} at step {run.position}, now a {found}"
    return ""


def _upgrade(draft: Draft, run: Run, workflow: CompiledWorkflow) -> None:
    step = step_at(workflow.definition.steps, run.position)
    waiting_for = tuple(step.wait_for.event) if isinstance(step, WaitForStep) else ()
    moved = run.model_copy(
        update={
            "workflow_version": workflow.version,
            "waiting_for": waiting_for,
            "updated_at": draft.now,
        }
    )
    draft.save(moved)
    draft.note(
        TraceKind.upgraded,
        f"run moved from version {run.workflow_version} to {workflow.version} at step"
        f" {run.position} (in_flight: upgrade)",
        workflow_id=run.workflow_id,
        run=moved,
        step=run.position,
        from_version=run.workflow_version,
        to_version=workflow.version,
    )
