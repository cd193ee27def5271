"""Applies a newly loaded version's `in_flight` policy to the runs still on its other versions.

Called when the current version of a workflow changes: by the daemon at start (the file may
have changed while it was down) and after a SIGHUP reload (for the workflows whose version
changed). `keep` does nothing. `cancel` ends the runs waiting on any other version with outcome
`cancelled`, traced with a reason naming both versions (`tidings explain` shows it); their
marketing messages still in the outbox are then recalled by the delivery worker
(`service.recall`), which cancels the messages of cancelled runs when they come due. `upgrade`
moves them to the new version where it can, and cancels the others (`engine.in_flight`).

Runs are taken a batch at a time (`Processor.batch`), one transaction per batch. Each contact
is locked (`Processor.contact_state`) and its runs read again under the lock before the core
decides (`engine.in_flight`), so when several daemons share a PostgreSQL database and load the
same version at once, each run is cancelled once: the second daemon finds it finished. Contacts
are locked in id order; should a batch still fail (e.g. a deadlock with an engine batch that
locks contacts in event order), it is retried one contact per transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.in_flight import on_new_version, on_other_version
from tidings.errors import StoreError
from tidings.model.workflow import InFlight
from tidings.ports import UnitOfWork
from tidings.service.processing import Processor

log = logging.getLogger(__name__)


def apply_in_flight(processor: Processor, workflows: Iterable[CompiledWorkflow]) -> int:
    """Apply each workflow's `in_flight` policy to the waiting runs on its other versions;
    returns how many runs it cancelled or moved to the new version."""
    cancelled = 0
    for workflow in workflows:
        if workflow.definition.in_flight is InFlight.keep:
            continue
        seen: set[str] = set()
        while True:
            picked, count = _batch(processor, workflow)
            cancelled += count
            # Runs another daemon ended meanwhile drop out of the next batch; runs that cannot
            # be ended (their contact is gone) come back: only new ones are worth a batch more.
            if picked <= seen:
                break
            seen |= picked
    return cancelled


def _batch(processor: Processor, workflow: CompiledWorkflow) -> tuple[set[str], int]:
    """One batch: the ids of the runs it picked and how many of them it cancelled."""
    try:
        with processor.store.transaction() as uow:
            picked, contact_ids = _next(uow, workflow, processor.batch)
            now = processor.clock.now()
            count = sum(_settle(processor, uow, workflow, c, now) for c in contact_ids)
            return picked, count
    except StoreError:
        log.warning("in_flight batch failed; retrying one contact at a time", exc_info=True)
    with processor.store.transaction() as uow:
        picked, contact_ids = _next(uow, workflow, processor.batch)
    count = 0
    for contact_id in contact_ids:
        with processor.store.transaction() as uow:
            count += _settle(processor, uow, workflow, contact_id, processor.clock.now())
    return picked, count


def _next(uow: UnitOfWork, workflow: CompiledWorkflow, limit: int) -> tuple[set[str], list[str]]:
    """The next batch of runs on other versions, and their contacts in lock order."""
    runs = uow.runs_off_version(workflow.id, workflow.version, limit)
    return {run.id for run in runs}, sorted({run.contact_id for run in runs})


def _settle(
    processor: Processor,
    uow: UnitOfWork,
    workflow: CompiledWorkflow,
    contact_id: str,
    now: datetime,
) -> int:
    """Decide and write one contact's runs; returns how many were cancelled or moved."""
    state = processor.contact_state(uow, contact_id)  # locked, then read: fresh
    if state is None:
        return 0
    decision = on_new_version(workflow, state, now, processor.env)
    if decision.is_empty:
        return 0
    processor.write(uow, decision, now)
    # Not the queued runs that started because a run before them was cancelled.
    settled = {run.id for run in state.runs if on_other_version(run, workflow)}
    return sum(1 for run in decision.runs if run.id in settled)
