"""The engine's shell: applies the pure core's decisions through the store, one unit of work.

Events are consumed from the durable log in order of receipt (`seq`); each event's effects
(runs advanced, trace, outbox messages, contact updates) commit in the same transaction that
marks the event processed, so an event is applied exactly once even across crashes. Due timers
are claimed from the runs table the same way. Each contact is locked (`lock_contact`) before
its state is read, so two engine processes never advance one contact at once. A batch locks
and reads the states of all its contacts at once (`tidings.service.contact_states`); a contact
met again later in the batch is read again, after what the batch wrote for it. A batch's runs,
trace and messages are written together when it ends (`tidings.service.batches`), and before
any read that could see them.

Late events (an `event_date` earlier than events already applied) are applied when they arrive:
they end runs whose exit goal they reach as long as the goal event is dated at or after the
run's start, and history conditions see them by event time from then on. A message not yet
recorded never will be once the run exited; a marketing message recorded but not yet delivered
is recalled by the delivery worker (`recall`) when it comes due.
A late *trigger* is the mirror case: before deciding an event that triggers a workflow with
exit goals or `wait_for`s, the contact's events of those names received before it (lower
`seq`) and dated at or after it are read and given to the core (`ContactState.applied_after`),
which ends at once a run whose goal they had already reached (`tidings.engine.goals`) and lets
a `wait_for` the new run reaches in that same decision take one (`tidings.engine.runner`).
A replay (`virtual_time`) applies events in event-time order, where a trigger is never late (a
tie of the same instant is not looked up), and skips that read.

A decision that raises (a bug, not a template or condition error — those are recorded by the
core) must not block the log: the batch is retried event by event, and the one that fails is
marked processed with an `error` trace entry naming the exception. It stays in the event log.

Virtual time (`simulate`): `replay_event` and `fire_due` work inside a transaction the caller
holds, with time taken from the events and timers themselves, never from the clock. A timer due
at T fires before any event dated after T and is processed with now = T (no fake lateness); an
event is processed with now = its own date; timers due at the same instant as an event fire
after it (an event "at the deadline" is in time). Events that no current workflow names (as a
trigger, an exit goal or a `wait_for`) are not applied at all: no contact state is loaded.
A processor built with `virtual_time=True` is the store's only writer and takes no locks; a
timer that cannot be fired (its workflow version or contact is gone, or its decision raised)
ends its run with Outcome.error rather than being claimed again forever.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from tidings.engine.core import ContactState, Decision, Environment, on_event, on_timer
from tidings.errors import StoreError
from tidings.model.events import Event
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Clock, EventHead, Store, UnitOfWork
from tidings.service.batch_reads import events_by_contact
from tidings.service.batches import Batch
from tidings.service.contact_states import Prefetched, read_active_runs, read_state, read_states
from tidings.service.registry import WorkflowRegistry

log = logging.getLogger(__name__)

Observer = Callable[[datetime, Decision], None]
"""Told of every decision written (with the `now` it was taken at), e.g. by `simulate`."""


@dataclass
class ProcessStats:
    """What one pass did."""

    events: int = 0
    timers: int = 0
    messages: int = 0
    last_due: datetime | None = None  # virtual time: the due time of the last timer fired

    def __iadd__(self, other: ProcessStats) -> ProcessStats:
        self.events += other.events
        self.timers += other.timers
        self.messages += other.messages
        self.last_due = other.last_due or self.last_due
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
        observer: Observer | None = None,
        virtual_time: bool = False,
        sole_claimer: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry
        self.env = env
        self.clock = clock
        self.batch = batch
        self.observer = observer
        # A replay's processor (`simulate`): the store's only writer, so contacts need no lock.
        self.virtual_time = virtual_time
        # No other process claims from this store (SQLite, the memory store): a claim of fewer
        # events than a batch then took every event there was. On PostgreSQL another process's
        # claim may hold some (skipped as locked, or held back behind a contact's earlier one).
        self.sole_claimer = sole_claimer
        # Virtual time: a lower bound of the earliest due timer (None: nothing due; unknown
        # until first asked). Only the replay methods use it: they are the store's one writer.
        self._due_hint: datetime | None = None
        self._due_known = False

    # ----------------------------------------------------------------- events

    def process_events(self) -> ProcessStats:
        """Apply one batch of unprocessed events; returns what it did (0 events = idle)."""
        try:
            with self.store.transaction() as uow:
                heads = uow.claim_event_heads(self.batch)
                stats = ProcessStats(events=len(heads))
                names = self.event_names if heads else frozenset()
                current = {(w.id, w.version) for w in self.registry.current}
                named = {h.contact_id for h in heads if h.name in names and h.contact_id}
                others = {h.contact_id for h in heads if h.name not in names and h.contact_id}
                batch = Batch(self.contact_states(uow, named), read_active_runs(uow, others))
                # Only the events a workflow may react to are read whole. Runs on versions no
                # longer current are never started, only ended, so the events chosen here
                # before any decision include every one still chosen below after some.
                wanted = [h.seq for h in heads if _reacted_to(uow, h, names, current, batch)]
                events = {e.seq: e for e in uow.get_events(wanted)} if wanted else {}
                batch.awaited = self._awaited_by_contact(uow, events.values())
                for head in heads:
                    if not _reacted_to(uow, head, names, current, batch):
                        continue  # no workflow reacts to it: it stays in the history only
                    self._apply_event(uow, events[head.seq], self.clock.now(), batch)
                batch.flush(uow)
                stats.messages = batch.writes.added
                uow.mark_events_processed([h.seq for h in heads])
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
                    stats.messages += self._apply_event(uow, events[0], self.clock.now())
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
            uow.add_trace([_error_entry(event, exc, self.clock.now())])

    def _apply_event(
        self, uow: UnitOfWork, event: Event, now: datetime, batch: Batch | None = None
    ) -> int:
        """Decide and write (`batch`: hold the writes, counted at its flush: 0 here)."""
        decision = self._decide_event(uow, event, now, batch)
        if decision is None:
            return 0
        return self._record(uow, decision, now, batch)

    def _decide_event(
        self, uow: UnitOfWork, event: Event, now: datetime, batch: Batch | None = None
    ) -> Decision | None:
        if event.contact_id is None:
            return None
        state = self._state(uow, event.contact_id, batch)
        if state is None:
            return None
        if not self.virtual_time:
            applied_after = self._applied_after(uow, state, event, now, batch)
            state = replace(state, applied_after=applied_after)
        workflows = self.registry.for_runs(_versions(state.runs), uow)
        return on_event(workflows, state, event, now, self.env)

    def _awaited_names(self, name: str) -> frozenset[str]:
        """The goal and `wait_for` names of the current workflows an event of `name` triggers."""
        return frozenset().union(
            *(w.awaited for w in self.registry.current if name in w.definition.trigger.event)
        )

    def _awaited_by_contact(
        self, uow: UnitOfWork, events: Collection[Event]
    ) -> dict[str, list[Event]] | None:
        """What `_applied_after` reads, for a batch's events at once: one query for all their
        contacts, of every name any of them awaits, from the earliest time any of them asks
        (each event then keeps its own). None when each event's read is spared anyway."""
        if self.virtual_time or self.registry.uses_history:
            return None
        by_name: dict[str, frozenset[str]] = {}
        contacts: set[str] = set()
        names: set[str] = set()
        since: datetime | None = None
        for event in events:
            if event.seq is None or event.contact_id is None:
                continue
            if event.name not in by_name:
                by_name[event.name] = self._awaited_names(event.name)
            if by_name[event.name]:
                contacts.add(event.contact_id)
                names |= by_name[event.name]
                since = event.occurred_at if since is None else min(since, event.occurred_at)
        if since is None:
            return {}
        # The clock only moves on: each event's own `min(occurred_at, now)` is at or after this.
        since = min(since, self.clock.now())
        return events_by_contact(uow, contacts, names=names, since=since)

    def _applied_after(
        self,
        uow: UnitOfWork,
        state: ContactState,
        event: Event,
        now: datetime,
        batch: Batch | None = None,
    ) -> Sequence[Event]:
        """The events a run this event triggers may already have met as a goal or awaited as
        a `wait_for` (received before it, dated at or after it: it came late)."""
        names = self._awaited_names(event.name)
        if not names or event.seq is None:
            return ()
        since = min(event.occurred_at, now)  # a run's goal horizon (see engine.goals)
        found: Sequence[Event]
        if self.registry.uses_history:
            found = state.history  # already read: spare the query
        elif batch is not None and batch.awaited is not None:
            found = batch.awaited.get(state.contact.id, ())  # read for the whole batch
        else:
            found = uow.contact_events(state.contact.id, names=names, since=since)
        # A lower seq was received, hence applied, before this event (the log's order).
        before = event.seq
        return [
            e
            for e in found
            if e.name in names and e.occurred_at >= since and e.seq is not None and e.seq < before
        ]

    # ----------------------------------------------------------------- timers

    def process_due(self) -> ProcessStats:
        """Fire one batch of due timers."""
        now = self.clock.now()
        stats = ProcessStats()
        with self.store.transaction() as uow:
            claimed = uow.claim_due_runs(now, self.batch)
            contacts = {run.contact_id for run in claimed}
            batch = Batch(self.contact_states(uow, contacts, last_runs=False))
            for run in claimed:
                stats.timers += 1
                decision = self._decide_timer(uow, run, now, batch)
                if decision is not None and not decision.is_empty:
                    self._record(uow, decision, now, batch)
            batch.flush(uow)
            stats.messages = batch.writes.added
        return stats

    def _decide_timer(
        self, uow: UnitOfWork, claimed: Run, now: datetime, batch: Batch | None = None
    ) -> Decision | None:
        state = self._state(uow, claimed.contact_id, batch, last_runs=False)
        if state is None:
            return None
        # The run as this transaction sees it (an earlier timer of the batch may have moved it).
        run = next((r for r in state.runs if r.id == claimed.id), None)
        if run is None:
            return Decision()  # it finished meanwhile: nothing to fire
        workflow = self.registry.version(run.workflow_id, run.workflow_version, uow)
        if workflow is None:
            return None
        return on_timer(workflow, run, state, now, self.env)

    # ----------------------------------------------------------------- both

    def run_until_idle(self, max_passes: int = 1_000_000) -> ProcessStats:
        """Process events and due timers until neither has work (as of the clock's now)."""
        total = ProcessStats()
        for _ in range(max_passes):
            step = self.process_events()
            step += self.process_due()
            total += step
            # The timers were claimed after their decisions: with no timer fired (a timer's step
            # may leave its run due again at once) and no event found, another round would find
            # nothing but what was written meanwhile, which the daemon is woken for. For a sole
            # claimer, a claim of fewer events than a batch found every event there was.
            short = step.events < self.batch if self.sole_claimer else step.events == 0
            if step.timers == 0 and short:
                break
        return total

    def contact_state(
        self, uow: UnitOfWork, contact_id: str, *, last_runs: bool = True
    ) -> ContactState | None:
        """The contact's state as the core sees it, the contact locked first (None: no such
        contact). A timer's goes without `last_runs`: only triggers ask for them."""
        lock = not self.virtual_time
        history = self.registry.uses_history
        return read_state(uow, contact_id, lock=lock, history=history, last_runs=last_runs)

    def contact_states(
        self, uow: UnitOfWork, contact_ids: Collection[str], *, last_runs: bool = True
    ) -> Prefetched:
        """`contact_state` of each of a batch's contacts, read ahead together."""
        lock = not self.virtual_time
        history = self.registry.uses_history
        return read_states(uow, contact_ids, lock=lock, history=history, last_runs=last_runs)

    def _state(
        self, uow: UnitOfWork, contact_id: str, batch: Batch | None, *, last_runs: bool = True
    ) -> ContactState | None:
        if batch is not None:
            if contact_id in batch.states:
                return batch.states.take(contact_id)
            batch.flush(uow)  # the state read next must see what the batch wrote
        return self.contact_state(uow, contact_id, last_runs=last_runs)

    def _record(
        self, uow: UnitOfWork, decision: Decision, now: datetime, batch: Batch | None
    ) -> int:
        """`write`, or with a batch hold the writes for its flush (0: counted there)."""
        if batch is None:
            return self.write(uow, decision, now)
        batch.hold(uow, decision)
        self._noted(decision, now)
        return 0

    def write(self, uow: UnitOfWork, decision: Decision, now: datetime) -> int:
        """Write one decision; returns how many new messages it queued."""
        if decision.contact is not None:
            uow.save_contact(decision.contact)
        if decision.runs:
            uow.save_runs(decision.runs)
        if decision.trace:
            uow.add_trace(decision.trace)
        added = uow.add_messages(decision.messages) if decision.messages else 0
        self._noted(decision, now)
        return added

    def _noted(self, decision: Decision, now: datetime) -> None:
        """What follows a decision written (or held): the due hint, the observer."""
        for run in decision.runs:
            if run.status is RunStatus.waiting and run.due_at is not None:
                self._lower_due_hint(run.due_at)
        if self.observer is not None:
            self.observer(now, decision)

    # ----------------------------------------------------------------- virtual time

    @property
    def event_names(self) -> frozenset[str]:
        """Every event name a current workflow reacts to: triggers, exit goals, `wait_for`s."""
        return frozenset().union(*(w.reacts_to for w in self.registry.current))

    def replay_event(
        self, uow: UnitOfWork, event: Event, names: frozenset[str] | None = None
    ) -> ProcessStats:
        """Virtual time: fire the timers due before the event, then apply it at its own date.

        `names` (default: `event_names`) filters which events are applied at all; the caller
        marks the event processed. A decision that raises is traced as an error and skipped.
        """
        stats = self.fire_due(uow, before=event.occurred_at)
        stats.events += 1
        if event.name not in (self.event_names if names is None else names):
            return stats
        now = event.occurred_at
        try:
            decision = self._decide_event(uow, event, now)
        except StoreError:
            raise
        except Exception as exc:  # a bug in a decision: record it, carry on with the replay
            log.exception("event could not be applied")
            uow.add_trace([_error_entry(event, exc, now)])
            return stats
        if decision is not None:
            stats.messages += self.write(uow, decision, now)
        return stats

    def fire_due(
        self,
        uow: UnitOfWork,
        *,
        before: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> ProcessStats:
        """Virtual time: fire timers in due order, each with now = its due time, while they
        are due before `before` (exclusive) or at `until` (inclusive); with neither, all.
        With `limit`, stops once that many have fired (call again for the rest)."""
        stats = ProcessStats()
        while (due := self._next_due(uow)) is not None:
            if (before is not None and due >= before) or (until is not None and due > until):
                break
            if limit is not None and stats.timers >= limit:
                break
            claimed = uow.claim_due_runs(due, self.batch)
            self._due_known = False  # what fires now may move the earliest due time
            for run in claimed:
                now = run.due_at or due
                try:
                    decision = self._decide_timer(uow, run, now)
                    problem = "its workflow version or contact is missing"
                except StoreError:
                    raise
                except Exception as exc:  # a bug in a decision: end the run, carry on
                    log.exception("timer could not be fired")
                    decision, problem = None, f"{type(exc).__name__}: {exc}"
                if decision is None:
                    # A timer that cannot move its run would be claimed again forever.
                    decision = _ended(run, f"timer not fired: {problem}", now)
                if decision.is_empty:
                    continue
                stats.timers += 1
                stats.last_due = now
                stats.messages += self.write(uow, decision, now)
        return stats

    def _next_due(self, uow: UnitOfWork) -> datetime | None:
        if not self._due_known:
            self._due_hint = uow.next_due_at()
            self._due_known = True
        return self._due_hint

    def _lower_due_hint(self, due: datetime) -> None:
        if self._due_known and (self._due_hint is None or due < self._due_hint):
            self._due_hint = due


def _reacted_to(
    uow: UnitOfWork,
    head: EventHead,
    names: frozenset[str],
    current: set[tuple[str, str]],
    batch: Batch,
) -> bool:
    """Whether a workflow may react to the event: a current one names it, or its contact has
    runs on a version not in `current` (their exit goals or `wait_for`s may name events the
    current versions do not)."""
    if head.name in names:
        return True
    if head.contact_id is None:
        return False
    return any(
        (run.workflow_id, run.workflow_version) not in current
        for run in batch.runs_for_contact(uow, head.contact_id)
    )


def _error_entry(event: Event, exc: Exception, now: datetime) -> TraceEntry:
    return TraceEntry(
        at=now,
        contact_id=event.contact_id or "",
        workflow_id="*",
        kind=TraceKind.error,
        message=f"event {event.name} ({event.id}) not applied: {type(exc).__name__}: {exc}",
    )


def _ended(run: Run, reason: str, now: datetime) -> Decision:
    """A run ended with Outcome.error because its timer could not be fired, and why."""
    ended = run.model_copy(
        update={
            "status": RunStatus.finished,
            "outcome": Outcome.error,
            "reason": reason,
            "finished_at": now,
            "updated_at": now,
            "due_at": None,
            "waiting_for": (),
        }
    )
    entry = TraceEntry(
        at=now,
        contact_id=run.contact_id,
        workflow_id=run.workflow_id,
        run_id=run.id,
        step=run.position,
        kind=TraceKind.error,
        message=reason,
    )
    return Decision(runs=[ended], trace=[entry])


def _versions(runs: Sequence[Run]) -> set[tuple[str, str]]:
    return {(r.workflow_id, r.workflow_version) for r in runs}
