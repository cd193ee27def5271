"""Ports: the small protocols the service drives. Adapters implement them; bootstrap picks them.

The store is split by concept (contacts, events, runs, trace, outbox, workflow versions) and
reached through one `UnitOfWork` per transaction, so that advancing a run, recording its trace
and queuing its messages commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Run
from tidings.model.trace import TraceEntry


class Clock(Protocol):
    """Where services get the time; tests and `simulate` pass a clock they control."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class ContactStore(Protocol):
    """Contacts and their identifiers (each identifier belongs to at most one contact)."""

    def find_contacts(self, identifiers: Mapping[IdentifierKind, str]) -> list[Contact]:
        """Every contact holding any of these identifiers, oldest first."""
        ...

    def lock_contact(self, contact_id: str) -> None:
        """Hold this contact for the rest of the transaction: two processes never advance the
        same contact's runs at once (a no-op where transactions are already serialised)."""
        ...

    def get_contact(self, contact_id: str) -> Contact | None:
        """One contact by id."""
        ...

    def save_contact(self, contact: Contact) -> None:
        """Insert or replace a contact and its identifiers."""
        ...


class ContactBatch(Protocol):
    """Contacts read and written in bulk: ingestion looks up every contact a group of requests
    names in one go and saves the ones it changed in one go, instead of a few statements per
    event. The stores offer it; a unit of work without it (e.g. a replay cache) is driven one
    contact at a time through `ContactStore`, with the same results."""

    def find_contacts_many(
        self,
        identifiers: Collection[tuple[IdentifierKind, str]],
        ids: Collection[str] = (),
    ) -> list[Contact]:
        """Every contact holding any of these identifiers or having one of these ids, oldest
        first (each once)."""
        ...

    def save_contacts(self, contacts: Sequence[Contact]) -> None:
        """`save_contact` for each (the last one wins for an id given twice); an identifier held
        by another contact, or claimed by two of them, refuses the whole call: nothing is saved."""
        ...


@dataclass(frozen=True)
class ContactRuns:
    """A contact's runs as the engine reads them: the active ones (`runs_for_contact`) and the
    newest of each (workflow, key), any status (`last_runs`); both oldest first."""

    active: list[Run]
    last: list[Run]


class ContactStates(Protocol):
    """What the engine reads of a contact (`lock_contact`, `get_contact`, `runs_for_contact`,
    `last_runs`), for many contacts at once: a batch of due timers or events reads its
    contacts in a few queries instead of three per step. The stores offer it; a unit of work
    without it (e.g. a replay cache) is read one contact at a time, with the same results."""

    def lock_contacts(self, contact_ids: Collection[str]) -> None:
        """`lock_contact` for each, in one order every process shares (two processes locking
        overlapping sets never wait on each other in a cycle)."""
        ...

    def get_contacts(self, contact_ids: Collection[str]) -> dict[str, Contact]:
        """The contacts among these ids that exist, by id."""
        ...

    def runs_of_contacts(
        self, contact_ids: Collection[str], *, last: bool = True
    ) -> dict[str, ContactRuns]:
        """`runs_for_contact` (active runs only) and `last_runs` of each id: every id given is
        a key. With `last=False` only the active runs are read (`last` left empty): only a
        trigger asks for the newest runs, never a timer."""
        ...


@dataclass(frozen=True)
class EventHead:
    """A claimed event's seq, name and contact: enough to tell whether any workflow could
    react to it."""

    seq: int
    name: str
    contact_id: str | None


class EventLog(Protocol):
    """The durable log of events, in order of receipt (`seq`)."""

    def add_event(
        self, event: Event, *, dedup_key: str | None = None, processed: bool = False
    ) -> tuple[Event, bool]:
        """Store an event (seq assigned; `processed`: as history, never claimed); with a dedup
        key seen before, return that one, False."""
        ...

    def claim_events(self, limit: int) -> list[Event]:
        """Unprocessed events in seq order, locked for this transaction."""
        ...

    def claim_event_heads(self, limit: int) -> list[EventHead]:
        """`claim_events`, each event's head only: what the engine decides by whether to read
        the rest of it (most events no workflow names are never applied)."""
        ...

    def get_events(self, seqs: Collection[int]) -> list[Event]:
        """The events with these seqs, in seq order (unknown seqs are left out)."""
        ...

    def mark_events_processed(self, seqs: Sequence[int]) -> None:
        """Mark events as applied to the workflows (same transaction as their effects)."""
        ...

    def contact_events(
        self,
        contact_id: str,
        *,
        names: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Event]:
        """A contact's events ordered by event time (then seq), optionally filtered."""
        ...

    def list_events(
        self,
        *,
        contact_id: str | None = None,
        names: Collection[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Event], int]:
        """A page of events, newest first, and how many match in all."""
        ...


@dataclass(frozen=True)
class NumberedEvent:
    """An event to store with the seq it carries (`add_event`'s other arguments alongside)."""

    event: Event
    dedup_key: str | None = None
    processed: bool = False


class EventNumbering(Protocol):
    """Events written in bulk with the seqs the log itself would give them: a replay into a
    fresh store, its only writer, holds a chunk's events and writes them in one statement at
    the chunk's end instead of one INSERT per event. The SQLite and memory stores offer it; a
    unit of work without it has its events written one at a time, with the same results."""

    def next_event_seq(self) -> int | None:
        """The seq `add_event` would give the next new event, when it is sure to number every
        new event after it one by one (no number used up otherwise); None where it is not
        known (PostgreSQL: a sequence, used up by conflicts and by rolled back inserts)."""
        ...

    def add_numbered_events(self, events: Sequence[NumberedEvent]) -> None:
        """Insert events with their seqs, numbered on from `next_event_seq` one by one (the log
        numbers on after them); a seq in use or a dedup key held refuses the call."""
        ...


class HeldDedupKeys(Protocol):
    """Which dedup keys the log holds, asked for many at once: ingestion, numbering a group's
    events itself (`EventNumbering`), knows then which of them are repeats without inserting."""

    def held_dedup_keys(self, keys: Collection[str]) -> set[str]:
        """The keys among these that stored events hold."""
        ...


@dataclass(frozen=True)
class RunCount:
    """How many runs of a workflow are in one status at one step."""

    workflow_id: str
    status: str
    position: str
    count: int
    next_due_at: datetime | None


class RunStore(Protocol):
    """Runs: the per-contact state of every workflow, and what is due when."""

    def save_runs(self, runs: Sequence[Run]) -> None:
        """Insert or replace runs by id."""
        ...

    def get_run(self, run_id: str) -> Run | None:
        """One run by id."""
        ...

    def runs_for_contact(self, contact_id: str, *, active_only: bool = True) -> list[Run]:
        """A contact's runs, oldest first (active ones only by default)."""
        ...

    def last_runs(self, contact_id: str) -> list[Run]:
        """The most recent run of each (workflow, key) for this contact, any status."""
        ...

    def claim_due_runs(self, now: datetime, limit: int) -> list[Run]:
        """Waiting runs with `due_at <= now`, earliest first, locked for this transaction."""
        ...

    def next_due_at(self) -> datetime | None:
        """The earliest due time of any waiting run."""
        ...

    def runs_off_version(self, workflow_id: str, version: str, limit: int) -> list[Run]:
        """Waiting runs of this workflow on any other version, oldest first (by start, id)."""
        ...

    def run_counts(self) -> list[RunCount]:
        """Runs per workflow, status and step."""
        ...


class TraceLog(Protocol):
    """The trace of every decision."""

    def add_trace(self, entries: Sequence[TraceEntry]) -> None:
        """Append trace entries."""
        ...

    def trace_for_contact(
        self, contact_id: str, workflow_id: str | None = None
    ) -> list[TraceEntry]:
        """A contact's trace in time order."""
        ...


class Outbox(Protocol):
    """Messages recorded before delivery; keys make every insert idempotent."""

    def add_messages(self, messages: Sequence[Message]) -> int:
        """Insert messages whose key is new; return how many were new."""
        ...

    def claim_messages(self, now: datetime, limit: int, lease: timedelta) -> list[Message]:
        """Due pending messages (and `sending` ones whose lease expired), now marked sending."""
        ...

    def save_message(self, message: Message) -> None:
        """Replace a message's delivery state by key."""
        ...

    def get_message(self, key: str) -> Message | None:
        """One message by key."""
        ...

    def messages_for_contact(self, contact_id: str) -> list[Message]:
        """A contact's messages, oldest first."""
        ...

    def next_message_due_at(self) -> datetime | None:
        """When the earliest pending message may next be attempted."""
        ...


class DeliveryBatch(Protocol):
    """Messages, runs and events read many at a time: the delivery worker checks a claimed batch
    for recall and records the outcomes that finished together with one read per table, instead
    of one per message. The stores offer it; a unit of work without it (e.g. a replay cache) is
    read one record at a time through `Outbox` and `RunStore`, with the same results."""

    def get_messages(self, keys: Collection[str]) -> list[Message]:
        """The messages with these keys, by key (unknown keys are left out)."""
        ...

    def get_runs(self, ids: Collection[str]) -> list[Run]:
        """The runs with these ids, by id (unknown ids are left out)."""
        ...

    def message_states(self, keys: Collection[str]) -> dict[str, tuple[MessageStatus, int]]:
        """The (status, attempts) of the messages with these keys (unknown keys are left out):
        what recording an outcome checks, without reading each message whole."""
        ...

    def contact_events_many(
        self,
        contact_ids: Collection[str],
        *,
        names: Collection[str] | None = None,
        since: datetime | None = None,
    ) -> list[Event]:
        """`contact_events` of each of these contacts, in one list by event time (then seq)."""
        ...


class DeliverySaves(Protocol):
    """The delivery states of many messages saved at once: the worker records the outcomes that
    finished together in one statement. Offered by the stores' units of work (and by wrappers
    that count saves); see `batch_reads.save_messages` for how it is looked up."""

    def save_messages(self, messages: Sequence[Message]) -> None:
        """`save_message` of each, in order, as one statement where the store can."""
        ...


class WorkflowVersions(Protocol):
    """The source of every workflow version runs started on, so they survive a reload."""

    def save_workflow_version(self, workflow_id: str, version: str, source: str) -> None:
        """Keep a version's source (a no-op when that version is already kept)."""
        ...

    def get_workflow_version(self, workflow_id: str, version: str) -> str | None:
        """The source of a kept version, or None."""
        ...


class UnitOfWork(ContactStore, EventLog, RunStore, TraceLog, Outbox, WorkflowVersions, Protocol):
    """Everything the store offers, inside one transaction."""


class Store(Protocol):
    """Opens transactions; committed when the block ends without error, rolled back otherwise."""

    def transaction(self) -> AbstractContextManager[UnitOfWork]:
        """One unit of work."""
        ...


class KeptConnection(Protocol):
    """A store that can keep one connection for a caller making many small transactions in a
    row from one thread (the delivery worker), without a pool's checkout and return each."""

    def kept_connection(self) -> AbstractContextManager[Store]:
        """Transactions on one connection until the block ends (the store itself where keeping
        one would not help)."""
        ...


class Alarm(Protocol):
    """The alarm clock (APScheduler in the daemon): wake the engine at a time. Not the ledger."""

    def wake_at(self, when: datetime) -> None:
        """Make sure the engine is woken no later than `when` (earlier alarms stay)."""
        ...


class EmailSender(Protocol):
    """Delivers one email; raises TemporaryDeliveryError or PermanentDeliveryError."""

    async def send_email(self, message: Message) -> str:
        """Send, and return the provider's reference (e.g. the Message-ID)."""
        ...


class SmsSender(Protocol):
    """Delivers one SMS; raises TemporaryDeliveryError or PermanentDeliveryError."""

    async def send_sms(self, message: Message) -> str:
        """Send, and return the provider's reference."""
        ...
