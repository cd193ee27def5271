"""Recall: a queued marketing message is cancelled, not sent, once its reason to exist is gone.

A message can wait in the outbox for hours (quiet hours, a frequency cap, an SMTP outage) after
its run queued it. Meanwhile the run may end by an exit goal (the cart was ordered), be ended by
mode `restart` (a new run sends its own reminder) or by an operator, or the contact may
unsubscribe from the channel. Sending then would be the "reminder after the purchase" the
product promises not to send, so the delivery worker checks each message in the very
transaction that claims it: a recalled message is saved `cancelled` with the reason in
`last_error` and a `skip` trace entry, and is never handed to a sender.

A run whose last step is the send ends (`finished`, or `exited_step` after an `exit` step) the
moment the message is queued, so its goals no longer end it. Its queued message is still
recalled when one of the contact's events reaches an exit goal of the run's workflow version,
judged by the engine's own goal logic (`engine.goals`) as for a waiting run: an event of a
goal's name, dated at or after the run's goal horizon, not its trigger, whose conditions hold
with the run's key and context as of now. Only for messages of such runs whose workflow has
exit goals, with one indexed query for the claimed batch: its contacts' events of the goal
names since the earliest horizon (each run then takes its own names and horizon).
An event the engine already weighed while the run waited did not end it then, and weighed
again gives the same answer unless its conditions read state that changed since; it is looked
at too, so an order the engine applied only after the run had finished (an event backlog
behind the timer that sent) is not missed. Reason: `exit goal met by order_completed (e12)`.
A run ended by an `error` keeps its messages: it met no goal, it failed.

Transactional messages (`transactional: true`, e.g. an order confirmation) are never recalled:
they are exempt from consent, and a goal does not cancel them either, since a receipt is owed
whatever the customer did next.

An exit, unsubscribe or goal event that commits after the claim is like one that comes after
the send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.decision import ContactState, Environment
from tidings.engine.goals import goal_horizon, goal_met_for_ended_run, goal_names
from tidings.model.contacts import Contact
from tidings.model.events import Event
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Outcome, Run
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import UnitOfWork
from tidings.service.batch_reads import contacts_by_id, events_by_contact, runs_by_id
from tidings.service.registry import WorkflowRegistry

# Run endings that take back what the run queued but has not delivered yet.
RECALLING = frozenset({Outcome.exited_goal, Outcome.restarted, Outcome.cancelled})

# Run endings after which the run's exit goals still recall what it queued.
GOALS_OUTLIVE = frozenset({Outcome.finished, Outcome.exited_step})

GOAL_MET = "exit_goal"
"""The `reason` in a skip entry's data when an event reached a goal after the run ended."""


@dataclass(frozen=True)
class Goals:
    """What judging an ended run's exit goals takes: its workflow version and the engine's env."""

    registry: WorkflowRegistry
    env: Environment


def recall_reason(
    message: Message, run: Run | None, contact: Contact | None
) -> tuple[str, str] | None:
    """Why this message must not be sent now, as (cause, reason text); None when it may go.

    The cause is `unsubscribed` or the run's outcome (`exited_goal`, `restarted`, `cancelled`).
    """
    if message.transactional:
        return None
    if contact is not None and message.channel in contact.unsubscribed:
        return "unsubscribed", f"unsubscribed from {message.channel.value}"
    if run is not None and run.outcome is not None and run.outcome in RECALLING:
        why = f": {run.reason}" if run.reason else ""
        return run.outcome.value, f"run {run.outcome.value}{why}"
    return None


def recall(
    uow: UnitOfWork, claimed: Sequence[Message], now: datetime, goals: Goals
) -> list[Message]:
    """Cancel the claimed messages that are recalled (saved and traced); return the others.

    The batch's runs, contacts and goal events are read up front, one query per table for all
    (`batch_reads`); the decisions are then made message by message, as they read.
    """
    marketing = [m for m in claimed if not m.transactional]
    runs = runs_by_id(uow, {m.run_id for m in marketing})
    contacts = contacts_by_id(uow, {m.contact_id for m in marketing})
    events = _GoalEvents.read(uow, marketing, runs, contacts, goals)
    met: dict[str, tuple[str, str] | None] = {}  # by run: one goal check per run and round
    keep: list[Message] = []
    trace: list[TraceEntry] = []
    for message in claimed:
        if message.transactional:
            keep.append(message)
            continue
        run, contact = runs.get(message.run_id), contacts.get(message.contact_id)
        recalled = recall_reason(message, run, contact)
        if recalled is None and run is not None and contact is not None:
            if run.id not in met:
                met[run.id] = _goal_met(
                    uow, run, contact, now, goals=goals, events=events, trace=trace
                )
            recalled = met[run.id]
        if recalled is None:
            keep.append(message)
            continue
        cause, reason = recalled
        update = {"status": MessageStatus.cancelled, "last_error": reason, "next_attempt_at": None}
        uow.save_message(message.model_copy(update=update))
        text = f"{message.channel.value} to {message.to} skipped: {reason} after it was queued"
        trace.append(
            message.trace_entry(now, TraceKind.skip, text, attempts=message.attempts, reason=cause)
        )
    if trace:
        uow.add_trace(trace)
    return keep


def _goals_judged(run: Run, goals: Goals, uow: UnitOfWork) -> CompiledWorkflow | None:
    """The workflow version whose exit goals an ended run's messages are checked against."""
    if run.outcome not in GOALS_OUTLIVE:
        return None
    workflow = goals.registry.version(run.workflow_id, run.workflow_version, uow)
    if workflow is None or not workflow.definition.exit:
        return None
    return workflow


@dataclass(frozen=True)
class _GoalEvents:
    """The events the goal checks of a batch look at, read for all its contacts at once: the
    whole history of those whose workflow's conditions read it, else the events of any goal
    name since the earliest horizon (each run then takes its own names and horizon)."""

    histories: dict[str, list[Event]]
    candidates: dict[str, list[Event]]

    @classmethod
    def read(
        cls,
        uow: UnitOfWork,
        marketing: Sequence[Message],
        runs: Mapping[str, Run],
        contacts: Mapping[str, Contact],
        goals: Goals,
    ) -> _GoalEvents:
        """What the batch's goal checks will need (a check not made only costs a wider read)."""
        whole: set[str] = set()
        some: set[str] = set()
        names: set[str] = set()
        horizons: list[datetime] = []
        for message in marketing:
            run, contact = runs.get(message.run_id), contacts.get(message.contact_id)
            if run is None or contact is None or recall_reason(message, run, contact):
                continue
            workflow = _goals_judged(run, goals, uow)
            if workflow is None:
                continue
            if workflow.uses_history:
                whole.add(contact.id)
            else:
                some.add(contact.id)
                names |= goal_names(workflow)
                horizons.append(goal_horizon(run))
        histories = events_by_contact(uow, whole)
        since = min(horizons, default=None)
        candidates = events_by_contact(uow, some - whole, names=names, since=since)
        return cls(histories, candidates)

    def history(self, contact_id: str) -> list[Event]:
        """The contact's events, as `contact_events(contact_id)` reads them."""
        return self.histories.get(contact_id, [])

    def goal_events(self, contact_id: str, names: frozenset[str], since: datetime) -> list[Event]:
        """As `contact_events(contact_id, names=names, since=since)` reads them."""
        read = self.candidates.get(contact_id) or self.histories.get(contact_id, [])
        return [e for e in read if e.name in names and e.occurred_at >= since]


def _goal_met(
    uow: UnitOfWork,
    run: Run,
    contact: Contact,
    now: datetime,
    *,
    goals: Goals,
    events: _GoalEvents,
    trace: list[TraceEntry],
) -> tuple[str, str] | None:
    """Whether an event reaches an exit goal of a run that ended on its own (see the module)."""
    workflow = _goals_judged(run, goals, uow)
    if workflow is None:
        return None
    history: Sequence[Event] = ()
    if workflow.uses_history:
        history = events.history(contact.id)  # conditions see it; the goals come from it too
        found = history
    else:
        found = events.goal_events(contact.id, goal_names(workflow), goal_horizon(run))
    state = ContactState(contact=contact, runs=(), history=history)
    reached, notes = goal_met_for_ended_run(state, workflow, run, found, now=now, env=goals.env)
    trace.extend(notes)
    if reached is None:
        return None
    return GOAL_MET, f"exit goal met by {reached.event.name} ({reached.event.id})"
