"""Runs in flight when a new version of their workflow is loaded: the `in_flight` policy, pure.

The new version decides (`in_flight` is read from the version being loaded, not from the one a
run started on): `keep` leaves every run on the version it started with; `cancel` ends each run
of this contact waiting on any other version of the workflow with Outcome.cancelled and a reason
naming both versions. Ending a run lets the next queued run of its key start, on the new
version, in the same decision (`Runner.finish`). Queued runs have not started: they are left in
line and start on whichever version ends the run before them.

The same input gives the same Decision, and a run already cancelled (or on the new version) is
not touched again, so applying the policy twice changes nothing the second time.
"""

from __future__ import annotations

from datetime import datetime

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.decision import ContactState, Decision, Draft, Environment
from tidings.engine.runner import Runner
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.workflow import InFlight


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
        if current.is_active:
            runner.finish(current, Outcome.cancelled, cancel_reason(current, workflow))
    return draft.build()


def on_other_version(run: Run, workflow: CompiledWorkflow) -> bool:
    """Whether the policy applies to this run: it waits on another version of `workflow`."""
    return (
        run.workflow_id == workflow.id
        and run.status is RunStatus.waiting
        and run.workflow_version != workflow.version
    )


def cancel_reason(run: Run, workflow: CompiledWorkflow) -> str:
    """Why a run was cancelled, naming the version it ran on and the one that replaced it."""
    return (
        f"version {run.workflow_version} replaced by {workflow.version}"
        f" (in_flight: {workflow.definition.in_flight.value})"
    )
