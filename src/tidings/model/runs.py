"""Run state: one workflow running for one contact (and key), where it is and what it waits for."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RunStatus(StrEnum):
    """Where a run is in its life. Only `finished` is terminal."""

    queued = "queued"  # mode `queued`: waits for the active run of its contact and key
    waiting = "waiting"  # paused on a timer and/or an event (`due_at`, `waiting_for`)
    finished = "finished"  # ended; `outcome` says how


class Outcome(StrEnum):
    """How a run ended. A false condition is an outcome, never an exception."""

    finished = "finished"  # walked off the end of its steps
    exited_goal = "exited_goal"  # an exit goal's event arrived
    exited_step = "exited_step"  # an `exit` step
    condition_false = "condition_false"  # reserved for runs that end on a failed precondition
    restarted = "restarted"  # mode `restart` ended it for a new run
    cancelled = "cancelled"  # ended by an operator or a workflow that was removed
    error = "error"  # a step failed in a way the run cannot continue past


class Run(BaseModel):
    """One run. `position` is the path of the next step to execute, e.g. `2/on_timeout/0`."""

    model_config = ConfigDict(frozen=True)

    id: str
    workflow_id: str
    workflow_version: str
    contact_id: str
    key: str = ""
    status: RunStatus
    position: str = "0"
    due_at: datetime | None = None
    waiting_for: tuple[str, ...] = ()
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    trigger_event_id: str
    # The event templates see as `event`: the trigger, or the one a `wait_for` received.
    event: dict[str, Any] = Field(default_factory=dict)
    # Small per-run memory (e.g. the timer a `wait_for` armed, queued trigger data).
    vars: dict[str, Any] = Field(default_factory=dict)
    seq: int = 0  # how many times this run advanced; part of idempotency keys

    @property
    def is_active(self) -> bool:
        """True while the run has not finished (queued or waiting)."""
        return self.status is not RunStatus.finished

    def template_view(self) -> dict[str, Any]:
        """What templates and conditions see as `run`."""
        return {
            "id": self.id,
            "key": self.key,
            "workflow": self.workflow_id,
            "started_at": self.started_at,
            "position": self.position,
        }
