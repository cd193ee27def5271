"""A batch of events or due timers: its contacts' states read ahead, its writes held back.

A batch reads the states of all its contacts at once (`tidings.service.contact_states`) and
writes its decisions together. Writing each decision as it is taken costs three driver calls
per step (runs, trace, messages); `PendingWrites` holds what the decisions of one batch append
to those tables and writes it when the batch ends (`flush`), one call per table, in the order
the decisions were taken: a run saved twice keeps its later state, trace entries and messages
keep their order, a message key met twice is queued once. A contact a decision changed is saved
at once, as before (its identifiers are checked against the other contacts' as each save is
made).

The effects are the same as written one decision at a time as long as nothing reads those
tables before the flush: the batch flushes before any such read (`tidings.service.processing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.engine.core import Decision
from tidings.model.events import Event
from tidings.model.messages import Message
from tidings.model.runs import Run
from tidings.model.trace import TraceEntry
from tidings.ports import UnitOfWork
from tidings.service.contact_states import Prefetched, written_to


class PendingWrites:
    """The runs, trace entries and messages a batch's decisions write, held until `flush`."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self.trace: list[TraceEntry] = []
        self.messages: list[Message] = []
        self.added = 0  # new messages among those flushed so far

    def __bool__(self) -> bool:
        return bool(self.runs or self.trace or self.messages)

    def hold(self, uow: UnitOfWork, decision: Decision) -> None:
        """Save the decision's contact now; keep the rest for the flush."""
        if decision.contact is not None:
            uow.save_contact(decision.contact)
        self.runs += decision.runs
        self.trace += decision.trace
        self.messages += decision.messages

    def flush(self, uow: UnitOfWork) -> None:
        """Write what is held, one call per table, and count the new messages in `added`."""
        if self.runs:
            uow.save_runs(self.runs)
        if self.trace:
            uow.add_trace(self.trace)
        if self.messages:
            self.added += uow.add_messages(self.messages)
        self.runs, self.trace, self.messages = [], [], []


@dataclass
class Batch:
    """What the steps of one batch share: states read ahead (each taken once), active runs
    read ahead (asked any number of times), both dropped for a contact once written to."""

    states: Prefetched
    active_runs: dict[str, list[Run]] = field(default_factory=dict)
    writes: PendingWrites = field(default_factory=PendingWrites)
    # The events of a batch's contacts a trigger may have been late for (see
    # `Processor._applied_after`), read for all of them at once: by contact, at least those of
    # the names and times each event asks for. None: read for each event as it comes.
    awaited: dict[str, list[Event]] | None = None

    def hold(self, uow: UnitOfWork, decision: Decision) -> None:
        """Keep a decision's writes for the flush; what was read ahead for its contact is
        stale from now on."""
        self.states.forget(decision)
        for contact_id in written_to(decision):
            self.active_runs.pop(contact_id, None)
        self.writes.hold(uow, decision)

    def runs_for_contact(self, uow: UnitOfWork, contact_id: str) -> list[Run]:
        """The contact's active runs: as read ahead, else read now, after the batch's writes."""
        runs = self.active_runs.get(contact_id)
        if runs is None:
            self.flush(uow)
            runs = uow.runs_for_contact(contact_id)
        return runs

    def flush(self, uow: UnitOfWork) -> None:
        """Write what the batch holds (before a read that could see it, and at its end)."""
        self.writes.flush(uow)
