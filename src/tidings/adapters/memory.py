"""The in-memory store: the SQL store's twin for tests, previews and dry runs.

It keeps the same contract as `SqlStore` — times in UTC, JSON fields that must survive a JSON
round trip, identifiers unique to one contact, keys that make outbox inserts idempotent — so the
one contract suite runs over both. Transactions are serialised by a lock (like SQLite's single
writer) and undone from a journal when the block raises.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from tidings.adapters import memory_records as records
from tidings.adapters.memory_events import MemoryEventLog
from tidings.errors import StoreError
from tidings.model.contacts import Contact
from tidings.model.events import IdentifierKind
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Run, RunStatus
from tidings.model.trace import TraceEntry
from tidings.ports import ContactRuns, RunCount


class MemoryStore:
    """A store held in memory; one transaction at a time, rolled back on exception."""

    def __init__(self) -> None:
        self._state = records.State()
        self._lock = threading.Lock()
        self._owner: int | None = None

    @contextmanager
    def transaction(self) -> Iterator[MemoryUnitOfWork]:
        """One unit of work; blocks while another thread holds one."""
        if self._owner == threading.get_ident():
            # The SQL stores would wait on themselves here (SQLite's write lock): say so instead.
            raise StoreError("a transaction is already open in this thread")
        with self._lock:
            self._owner = threading.get_ident()
            journal = records.Journal()
            try:
                yield MemoryUnitOfWork(self._state, journal)
            except BaseException:
                journal.rollback()
                raise
            finally:
                self._owner = None


class MemoryUnitOfWork(MemoryEventLog):
    """Everything the store offers, applied to memory and journaled for rollback."""

    def __init__(self, state: records.State, journal: records.Journal) -> None:
        self._s = state
        self._j = journal

    # -- contacts -------------------------------------------------------------------------

    def find_contacts(self, identifiers: Mapping[IdentifierKind, str]) -> list[Contact]:
        """Every contact holding any of these identifiers, oldest first."""
        return self.find_contacts_many(identifiers.items())

    def find_contacts_many(
        self, identifiers: Collection[tuple[IdentifierKind, str]], ids: Collection[str] = ()
    ) -> list[Contact]:
        """Every contact holding any of these identifiers or having one of these ids, oldest
        first."""
        found = {self._s.owners.get((IdentifierKind(k), v)) for k, v in identifiers}
        found.update(i for i in ids if i in self._s.contacts)
        chosen = [self._s.contacts[i] for i in found if i is not None]
        return [records.out(c) for c in sorted(chosen, key=lambda c: (c.created_at, c.id))]

    def lock_contact(self, contact_id: str) -> None:
        """Transactions are serialised by the store's lock already."""

    def lock_contacts(self, contact_ids: Collection[str]) -> None:
        """Transactions are serialised by the store's lock already."""

    def get_contact(self, contact_id: str) -> Contact | None:
        """One contact by id."""
        contact = self._s.contacts.get(contact_id)
        return records.out(contact) if contact else None

    def get_contacts(self, contact_ids: Collection[str]) -> dict[str, Contact]:
        """The contacts among these ids that exist, by id."""
        found = {i: self._s.contacts[i] for i in contact_ids if i in self._s.contacts}
        return {i: records.out(contact) for i, contact in found.items()}

    def save_contact(self, contact: Contact) -> None:
        """Insert or replace a contact and its identifiers; an identifier held by another
        contact is refused (moving it is the caller's decision)."""
        self.save_contacts([contact])

    def save_contacts(self, contacts: Sequence[Contact]) -> None:
        """`save_contact` for each, as if one after the other; any refusal saves none."""
        latest = {contact.id: contact for contact in contacts}
        owners: dict[tuple[IdentifierKind, str], str | None] = {}  # as the saves leave them
        for contact in latest.values():
            new = {(IdentifierKind(k), v) for k, v in contact.identifiers.items()}
            old = self._s.contacts.get(contact.id)
            owners.update((pair, None) for pair in (old.identifiers.items() if old else ()))
            for pair in sorted(new):
                owner = owners[pair] if pair in owners else self._s.owners.get(pair)
                if owner is not None and owner != contact.id:
                    raise StoreError(
                        f"identifier {pair[0].value}={pair[1]!r} belongs to contact {owner!r}"
                    )
            owners.update((pair, contact.id) for pair in new)
        stored = [records.stored(records.ordered(contact)) for contact in latest.values()]
        for pair, owner in owners.items():
            if owner is None:
                self._j.pop(self._s.owners, pair)
            else:
                self._j.put(self._s.owners, pair, owner)
        for contact in stored:
            self._j.put(self._s.contacts, contact.id, contact)

    # -- runs -----------------------------------------------------------------------------

    def save_runs(self, runs: Sequence[Run]) -> None:
        """Insert or replace runs by id."""
        for run in runs:
            old = self._s.runs.get(run.id)
            if old is not None and old.contact_id != run.contact_id:
                self._j.pop(self._s.runs_by_contact[old.contact_id], run.id)
            if run.contact_id not in self._s.runs_by_contact:
                self._j.put(self._s.runs_by_contact, run.contact_id, {})
            self._j.put(self._s.runs_by_contact[run.contact_id], run.id, None)
            self._j.put(self._s.runs, run.id, records.stored(run))

    def get_run(self, run_id: str) -> Run | None:
        """One run by id."""
        run = self._s.runs.get(run_id)
        return records.out(run) if run else None

    def get_runs(self, ids: Collection[str]) -> list[Run]:
        """The runs with these ids, by id (`DeliveryBatch`)."""
        found = (self._s.runs.get(run_id) for run_id in sorted(set(ids)))
        return [records.out(run) for run in found if run is not None]

    def runs_for_contact(self, contact_id: str, *, active_only: bool = True) -> list[Run]:
        """A contact's runs, oldest first (by start, then id)."""
        runs = [self._s.runs[i] for i in self._s.runs_by_contact.get(contact_id, {})]
        chosen = [r for r in runs if r.is_active or not active_only]
        return [records.out(r) for r in sorted(chosen, key=lambda r: (r.started_at, r.id))]

    def last_runs(self, contact_id: str) -> list[Run]:
        """The most recent run (by start, then id) of each (workflow, key), oldest first."""
        latest: dict[tuple[str, str], Run] = {}
        for run in self.runs_for_contact(contact_id, active_only=False):
            latest[(run.workflow_id, run.key)] = run
        return sorted(latest.values(), key=lambda r: (r.started_at, r.id))

    def runs_of_contacts(
        self, contact_ids: Collection[str], *, last: bool = True
    ) -> dict[str, ContactRuns]:
        """`runs_for_contact` and `last_runs` of each id (`last=False`: active runs only)."""
        return {
            i: ContactRuns(self.runs_for_contact(i), self.last_runs(i) if last else [])
            for i in contact_ids
        }

    def claim_due_runs(self, now: datetime, limit: int) -> list[Run]:
        """Waiting runs with `due_at <= now`, earliest first (then by id)."""
        now = records.utc(now)
        due = [
            r
            for r in self._s.runs.values()
            if r.status is RunStatus.waiting and r.due_at is not None and r.due_at <= now
        ]
        due.sort(key=lambda r: (r.due_at or now, r.id))
        return [records.out(r) for r in due[:limit]]

    def next_due_at(self) -> datetime | None:
        """The earliest due time of any waiting run."""
        times = [
            r.due_at
            for r in self._s.runs.values()
            if r.status is RunStatus.waiting and r.due_at is not None
        ]
        return min(times, default=None)

    def runs_off_version(self, workflow_id: str, version: str, limit: int) -> list[Run]:
        """Waiting runs of this workflow on any other version, oldest first (by start, id)."""
        found = [
            r
            for r in self._s.runs.values()
            if r.status is RunStatus.waiting
            and r.workflow_id == workflow_id
            and r.workflow_version != version
        ]
        found.sort(key=lambda r: (r.started_at, r.id))
        return [records.out(r) for r in found[:limit]]

    def run_counts(self) -> list[RunCount]:
        """Runs per workflow, status and step, with the earliest due time among them."""
        groups: dict[tuple[str, str, str], list[Run]] = {}
        for run in self._s.runs.values():
            groups.setdefault((run.workflow_id, run.status.value, run.position), []).append(run)
        return [
            RunCount(
                workflow_id=wid,
                status=status,
                position=position,
                count=len(runs),
                next_due_at=min((r.due_at for r in runs if r.due_at is not None), default=None),
            )
            for (wid, status, position), runs in sorted(groups.items())
        ]

    # -- trace ----------------------------------------------------------------------------

    def add_trace(self, entries: Sequence[TraceEntry]) -> None:
        """Append trace entries."""
        for entry in entries:
            stored = records.stored(entry)
            if stored.contact_id not in self._s.trace_by_contact:
                self._j.put(self._s.trace_by_contact, stored.contact_id, [])
            self._j.append(self._s.trace_by_contact[stored.contact_id], len(self._s.trace))
            self._j.append(self._s.trace, stored)

    def trace_for_contact(
        self, contact_id: str, workflow_id: str | None = None
    ) -> list[TraceEntry]:
        """A contact's trace in time order (entries at the same time in the order added)."""
        entries = [self._s.trace[i] for i in self._s.trace_by_contact.get(contact_id, [])]
        if workflow_id is not None:
            entries = [e for e in entries if e.workflow_id == workflow_id]
        return [records.out(e) for e in sorted(entries, key=lambda e: e.at)]

    # -- outbox ---------------------------------------------------------------------------

    def add_messages(self, messages: Sequence[Message]) -> int:
        """Insert messages whose key is new; return how many were new."""
        added = 0
        for message in messages:
            if message.key not in self._s.messages:
                self._j.put(self._s.messages, message.key, records.stored(message))
                added += 1
        return added

    def claim_messages(self, now: datetime, limit: int, lease: timedelta) -> list[Message]:
        """Due pending messages and expired `sending` ones, earliest due first, now sending."""
        now = records.utc(now)
        due = [
            m
            for m in self._s.messages.values()
            if (m.status is MessageStatus.pending and records.message_due(m) <= now)
            or (m.status is MessageStatus.sending and self._s.leases.get(m.key, now) <= now)
        ]
        due.sort(key=lambda m: (records.message_due(m), m.key))
        claimed = []
        for message in due[:limit]:
            sending = message.model_copy(update={"status": MessageStatus.sending})
            self._j.put(self._s.messages, message.key, sending)
            self._j.put(self._s.leases, message.key, now + lease)
            claimed.append(records.out(sending))
        return claimed

    def save_message(self, message: Message) -> None:
        """Replace a message's delivery state (status, attempts, times, error, provider id)."""
        stored = self._s.messages.get(message.key)
        if stored is None:
            raise StoreError(f"no message with key {message.key!r} in the outbox")
        fresh = records.stored(message)
        update = {name: getattr(fresh, name) for name in records.DELIVERY_STATE}
        self._j.put(self._s.messages, message.key, stored.model_copy(update=update))
        if message.status is not MessageStatus.sending:
            self._j.pop(self._s.leases, message.key)

    def save_messages(self, messages: Sequence[Message]) -> None:
        """`save_message` of each, in order (`DeliverySaves`)."""
        for message in messages:
            self.save_message(message)

    def get_message(self, key: str) -> Message | None:
        """One message by key."""
        message = self._s.messages.get(key)
        return records.out(message) if message else None

    def get_messages(self, keys: Collection[str]) -> list[Message]:
        """The messages with these keys, by key (`DeliveryBatch`)."""
        found = (self._s.messages.get(key) for key in sorted(set(keys)))
        return [records.out(message) for message in found if message is not None]

    def message_states(self, keys: Collection[str]) -> dict[str, tuple[MessageStatus, int]]:
        """The (status, attempts) of the messages with these keys (`DeliveryBatch`)."""
        found = ((key, self._s.messages.get(key)) for key in set(keys))
        return {key: (m.status, m.attempts) for key, m in found if m is not None}

    def messages_for_contact(self, contact_id: str) -> list[Message]:
        """A contact's messages, oldest first (by creation, then key)."""
        chosen = [m for m in self._s.messages.values() if m.contact_id == contact_id]
        return [records.out(m) for m in sorted(chosen, key=lambda m: (m.created_at, m.key))]

    def next_message_due_at(self) -> datetime | None:
        """When the earliest pending message is due, or a `sending` lease runs out."""
        times = [
            records.message_due(m)
            for m in self._s.messages.values()
            if m.status is MessageStatus.pending
        ]
        times += [
            self._s.leases[m.key]
            for m in self._s.messages.values()
            if m.status is MessageStatus.sending and m.key in self._s.leases
        ]
        return min(times, default=None)

    # -- workflow versions ----------------------------------------------------------------

    def save_workflow_version(self, workflow_id: str, version: str, source: str) -> None:
        """Keep a version's source; the same version with other source is refused."""
        kept = self._s.versions.get((workflow_id, version))
        if kept is None:
            self._j.put(self._s.versions, (workflow_id, version), source)
        elif kept != source:
            raise StoreError(_version_clash(workflow_id, version))

    def get_workflow_version(self, workflow_id: str, version: str) -> str | None:
        """The source of a kept version, or None."""
        return self._s.versions.get((workflow_id, version))


def _version_clash(workflow_id: str, version: str) -> str:
    return f"workflow {workflow_id!r} version {version!r} is already kept with different source"
