"""The engine's shell: applies the pure core's decisions through the store, one unit of work.

Events are consumed from the durable log in order of receipt (`seq`); each event's effects
(runs advanced, trace, outbox messages, contact updates) commit in the same transaction that
marks the event processed, so an event is applied exactly once even across crashes. Due timers
are claimed from the runs table the same way.

Late events (an `event_date` earlier than events already applied) are applied when they arrive:
they end runs whose exit goal they reach as long as the goal event is dated at or after the
run's start, and history conditions see them by event time from then on. A message already
recorded in the outbox is not recalled; one not yet recorded never will be once the run exited.

A decision that raises (a bug, not a template or condition error — those are recorded by the
core) must not block the log: the batch is retried event by event, and the one that fails is
marked processed with an `error` trace entry naming the exception. It stays in the event log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tidings.engine.core import ContactState, Decision, Environment, on_event, on_timer
from tidings.errors import StoreError
from tidings.model.events import Event
from tidings.model.runs import Run
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Clock, Store, UnitOfWork
from tidings.service.registry import WorkflowRegistry

log = logging.getLogger(__name__)


@dataclass
class ProcessStats:
    """What one pass did."""

    events: int = 0
    timers: int = 0
    messages: int = 0

    def __iadd__(self, other: ProcessStats) -> ProcessStats:
        self.events += other.events
        self.timers += other.timers
        self.messages += other.messages
        return self


class Processor:
    """Consumes events and due timers and applies the core's decisions."""

    def __init__(
        self,
        store: Store,
        registry: WorkflowRegistry,
        env: Environment,
        clock: Clock,
        *,
        batch: int = 200,
    ) -> None:
        self.store = store
        self.registry = registry
        self.env = env
        self.clock = clock
        self.batch = batch

    # ----------------------------------------------------------------- events

    def process_events(self) -> ProcessStats:
        """Apply one batch of unprocessed events; returns what it did (0 events = idle)."""
        try:
            with self.store.transaction() as uow:
                events = uow.claim_events(self.batch)
                stats = ProcessStats(events=len(events))
                for event in events:
                    stats.messages += self._apply_event(uow, event)
                uow.mark_events_processed([e.seq for e in events if e.seq is not None])
                return stats
        except Exception:
            log.exception("event batch failed; retrying its events one by one")
            return self._process_events_one_by_one()

    def _process_events_one_by_one(self) -> ProcessStats:
        stats = ProcessStats()
        for _ in range(self.batch):
            events: list[Event] = []
            try:
                with self.store.transaction() as uow:
                    events = uow.claim_events(1)
                    if not events:
                        break
                    stats.events += 1
                    stats.messages += self._apply_event(uow, events[0])
                    uow.mark_events_processed([events[0].seq or 0])
            except StoreError:
                raise  # the store itself failed: nothing to blame on the event
            except Exception as exc:  # a bug in a decision: record it, never block the log
                log.exception("event could not be applied")
                if events:
                    self._quarantine(events[0], exc)
        return stats

    def _quarantine(self, event: Event, exc: Exception) -> None:
        with self.store.transaction() as uow:
            uow.mark_events_processed([event.seq or 0])
            uow.add_trace(
                [
                    TraceEntry(
                        at=self.clock.now(),
                        contact_id=event.contact_id or "",
                        workflow_id="*",
                        kind=TraceKind.error,
                        message=f"event {event.name} ({event.id}) not applied: "
                        f"{type(exc).__name__}: {exc}",
                    )
                ]
            )

    def _apply_event(self, uow: UnitOfWork, event: Event) -> int:
        if event.contact_id is None:
            return 0
        state = self._state(uow, event.contact_id)
        if state is None:
            return 0
        workflows = self.registry.for_runs(_versions(state.runs), uow)
        decision = on_event(workflows, state, event, self.clock.now(), self.env)
        return _apply(uow, decision)

    # ----------------------------------------------------------------- timers

    def process_due(self) -> ProcessStats:
        """Fire one batch of due timers."""
        now = self.clock.now()
        stats = ProcessStats()
        with self.store.transaction() as uow:
            for run in uow.claim_due_runs(now, self.batch):
                stats.timers += 1
                stats.messages += self._fire(uow, run)
        return stats

    def _fire(self, uow: UnitOfWork, claimed: Run) -> int:
        state = self._state(uow, claimed.contact_id)
        if state is None:
            return 0
        # The run as this transaction sees it (an earlier timer of the batch may have moved it).
        run = next((r for r in state.runs if r.id == claimed.id), None)
        if run is None:
            return 0
        workflow = self.registry.version(run.workflow_id, run.workflow_version, uow)
        if workflow is None:
            return 0
        return _apply(uow, on_timer(workflow, run, state, self.clock.now(), self.env))

    # ----------------------------------------------------------------- both

    def run_until_idle(self, max_passes: int = 1_000_000) -> ProcessStats:
        """Process events and due timers until neither has work (as of the clock's now)."""
        total = ProcessStats()
        for _ in range(max_passes):
            step = self.process_events()
            step += self.process_due()
            total += step
            if step.events == 0 and step.timers == 0:
                break
        return total

    def _state(self, uow: UnitOfWork, contact_id: str) -> ContactState | None:
        contact = uow.get_contact(contact_id)
        if contact is None:
            return None
        history: Sequence[Event] = ()
        if self.registry.uses_history:
            history = uow.contact_events(contact_id)
        return ContactState(
            contact=contact,
            runs=uow.runs_for_contact(contact_id),
            last_runs=uow.last_runs(contact_id),
            history=history,
        )


def _versions(runs: Sequence[Run]) -> set[tuple[str, str]]:
    return {(r.workflow_id, r.workflow_version) for r in runs}


def _apply(uow: UnitOfWork, decision: Decision) -> int:
    """Write one decision; returns how many new messages it queued."""
    if decision.contact is not None:
        uow.save_contact(decision.contact)
    if decision.runs:
        uow.save_runs(decision.runs)
    if decision.trace:
        uow.add_trace(decision.trace)
    return uow.add_messages(decision.messages) if decision.messages else 0
