"""The trace: every decision the engine takes, with its time, step path and reason."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TraceKind(StrEnum):
    """What kind of decision a trace entry records."""

    trigger_matched = "trigger_matched"
    trigger_skipped = "trigger_skipped"  # matched by name but a condition, mode or re-entry said no
    run_started = "run_started"
    run_queued = "run_queued"
    condition = "condition"  # an `if` step and its value
    wait = "wait"  # a timer armed, with its due time
    wait_for = "wait_for"  # waiting for an event, with its timeout
    resumed = "resumed"  # a timer fired or a waited-for event arrived
    late = "late"  # a timer fired later than planned, and what the late policy did
    send = "send"  # a message queued in the outbox
    skip = "skip"  # a send skipped (unsubscribed, late policy, no address), with the reason
    update_contact = "update_contact"
    exited = "exited"  # goal or exit step
    upgraded = "upgraded"  # a waiting run moved to a new version of its workflow (in_flight)
    finished = "finished"
    error = "error"  # a template or condition error, with the reason
    conflict = "conflict"  # an event's identifier held by another contact: not attached, and why
    delivered = "delivered"
    delivery_failed = "delivery_failed"


class TraceEntry(BaseModel):
    """One line of a run's (or a contact's) history."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    contact_id: str
    workflow_id: str
    run_id: str | None = None
    step: str | None = None  # step path, e.g. `2/then/0`
    kind: TraceKind
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
