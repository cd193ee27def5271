"""A cache in front of the store for a replay that is the store's only writer (`simulate`).

Reading a contact's state from SQL for every event is what makes a replay slow; here each
contact's contact row, event history and runs are read once, then kept up to date by the writes
that go through the cache. Runs, contacts and trace entries are written behind, in bulk, when
the chunk's transaction ends (`flush`); so are messages and events when the store was empty at
the start (their keys are then known to be new; events only where the store's numbering is
known, `replay_events`), else events are written through (the store assigns their `seq`). On
an empty store a contact's history is never read: it holds only what went through here.
Waiting runs are indexed in memory by due time, so firing timers reads nothing either.

This is only sound when nothing else writes to the store while the replay runs, which is what
`simulate` guarantees (a temporary database, or one given to it alone). Every answer is the one
the store would give: same filters, same order (runs by start then id, events by date then
seq, contacts oldest first). Contacts beyond `max_contacts` are dropped after a flush, least
recently used first, and read again when needed.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.messages import Message
from tidings.model.runs import Run, RunStatus
from tidings.model.trace import TraceEntry
from tidings.ports import EventHead, RunCount, UnitOfWork
from tidings.service.replay_events import EventsBehind

MAX_CONTACTS = 10_000  # a contact's history may be long: keep the active ones
_FAR = datetime(9999, 1, 1, tzinfo=UTC)
_ALL = 2**31 - 1


@dataclass
class _Entry:
    """What the cache knows of one contact (None: not read yet)."""

    contact: Contact | None = None
    events: list[Event] | None = None  # the whole history, by (date, seq)
    active: dict[str, Run] | None = None  # active runs by id
    last: dict[tuple[str, str], Run] | None = None  # newest run per (workflow, key)


class ReplayCache:
    """The cached state; bind it to each transaction's unit of work with `bind`."""

    def __init__(self, *, fresh: bool = False, max_contacts: int = MAX_CONTACTS) -> None:
        # fresh: the store held no contacts and no events when the replay began (a database it
        # created), so an identifier or contact id the cache never saw needs no query to be
        # known absent, and a contact's history is only what this cache wrote of it.
        self.fresh = fresh
        self.max_contacts = max_contacts
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.known: set[str] = set()  # contact ids that exist in the store or will at the flush
        self.absent: set[str] = set()  # contact ids the store said it does not have
        # Fresh store: contacts whose events the store holds (written through this cache). One
        # outside it has no history; one in it whose entry the trim dropped is read again.
        self.with_events: set[str] = set()
        self.owners: dict[tuple[IdentifierKind, str], str | None] = {}  # None: nobody
        self.dirty_contacts: dict[str, Contact] = {}
        self.dirty_runs: dict[str, Run] = {}
        self.trace: list[TraceEntry] = []
        self.messages: dict[str, Message] = {}  # fresh store only: new messages by key
        self.message_keys: set[str] = set()  # every key recorded by this replay
        self.waiting: dict[str, Run] | None = None  # waiting runs by id (None: not read)
        self.new_events = EventsBehind(fresh=fresh)
        self.due: list[tuple[datetime, str]] = []  # heap; stale items skipped on the way

    def bind(self, uow: UnitOfWork) -> CachedUnitOfWork:
        """A unit of work over `uow` that answers from this cache."""
        return CachedUnitOfWork(self, uow)


class CachedUnitOfWork:
    """The UnitOfWork protocol, answered from a ReplayCache over one transaction."""

    def __init__(self, cache: ReplayCache, uow: UnitOfWork) -> None:
        self.cache = cache
        self.uow = uow

    def flush(self) -> None:
        """Write what is pending (events, contacts, runs, trace), then trim the cache."""
        c = self.cache
        c.new_events.flush(self.uow)
        if c.dirty_contacts:
            save_many = getattr(self.uow, "save_contacts", None)  # ContactBatch, when offered
            if callable(save_many):
                save_many(list(c.dirty_contacts.values()))
            else:
                for contact in c.dirty_contacts.values():
                    self.uow.save_contact(contact)
            c.dirty_contacts.clear()
        if c.dirty_runs:
            self.uow.save_runs(list(c.dirty_runs.values()))
            c.dirty_runs.clear()
        if c.trace:
            self.uow.add_trace(c.trace)
            c.trace = []
        self._flush_messages()
        while len(c.entries) > c.max_contacts:
            # The owners of identifiers stay known (they are small); the contact's state is
            # read again from the store, where the flush just put it.
            c.entries.popitem(last=False)

    def _entry(self, contact_id: str) -> _Entry:
        entry = self.cache.entries.get(contact_id)
        if entry is None:
            entry = self.cache.entries[contact_id] = _Entry()
        else:
            self.cache.entries.move_to_end(contact_id)
        return entry

    # -------------------------------------------------------------- contacts

    def find_contacts(self, identifiers: Mapping[IdentifierKind, str]) -> list[Contact]:
        """Every contact holding any of these identifiers, oldest first."""
        owners, fresh = self.cache.owners, self.cache.fresh  # fresh: no owner the cache missed
        unknown = {} if fresh else {k: v for k, v in identifiers.items() if (k, v) not in owners}
        if unknown:
            for contact in self.uow.find_contacts(unknown):
                self._remember(contact)
            for kind, value in unknown.items():
                owners.setdefault((kind, value), None)
        ids = {owners.get((k, v)) for k, v in identifiers.items()}
        contacts = [c for cid in ids if cid and (c := self.get_contact(cid)) is not None]
        # Most events carry one identifier, so one contact at most: nothing to sort.
        return sorted(contacts, key=lambda c: (c.created_at, c.id)) if contacts[1:] else contacts

    def lock_contact(self, contact_id: str) -> None:
        """Nothing to do: the replay is the store's only writer."""

    def get_contact(self, contact_id: str) -> Contact | None:
        """One contact by id."""
        entry = self.cache.entries.get(contact_id)
        if entry is not None and entry.contact is not None:
            self.cache.entries.move_to_end(contact_id)
            return entry.contact
        if contact_id in self.cache.absent:
            return None
        if self.cache.fresh and contact_id not in self.cache.known:
            self.cache.absent.add(contact_id)
            return None
        found = self.uow.get_contact(contact_id)
        if found is None:
            self.cache.absent.add(contact_id)
            return None
        self._remember(found)
        return found

    def save_contact(self, contact: Contact) -> None:
        """Insert or replace a contact and its identifiers (written at the flush)."""
        entry = self._entry(contact.id)
        if contact.id in self.cache.absent:
            # A new contact: no run in the store can belong to it yet. (Its history is read
            # when first asked for, so contacts nobody asks about keep no events here.)
            self.cache.absent.discard(contact.id)
            entry.active, entry.last = {}, {}
        if entry.contact is not None:
            for kind, value in entry.contact.identifiers.items():
                if contact.identifiers.get(kind) != value:
                    self.cache.owners[(kind, value)] = None
        self._remember(contact)
        self.cache.dirty_contacts[contact.id] = contact

    def _remember(self, contact: Contact) -> None:
        self._entry(contact.id).contact = contact
        self.cache.known.add(contact.id)
        for kind, value in contact.identifiers.items():
            self.cache.owners[(kind, value)] = contact.id

    # -------------------------------------------------------------- events

    def add_event(
        self, event: Event, *, dedup_key: str | None = None, processed: bool = False
    ) -> tuple[Event, bool]:
        """Store an event (held until the flush where its seq is known, else written through)."""
        stored, is_new = self.cache.new_events.add_event(self.uow, event, dedup_key, processed)
        if is_new and stored.contact_id is not None:
            entry = self._entry(stored.contact_id)
            if entry.events is None and self._history_is_empty(stored.contact_id):
                entry.events = []  # its first event: the whole history is the cache's from now
            self.cache.with_events.add(stored.contact_id)
            history = entry.events
            if history is not None:
                history.append(stored)
                if len(history) > 1 and _event_order(history[-2]) > _event_order(stored):
                    history.sort(key=_event_order)
        return stored, is_new

    def claim_events(self, limit: int) -> list[Event]:
        """Unprocessed events (from the store, after writing what is held)."""
        self.cache.new_events.flush(self.uow)
        return self.uow.claim_events(limit)

    def claim_event_heads(self, limit: int) -> list[EventHead]:
        """Unprocessed events' heads (from the store, after writing what is held)."""
        self.cache.new_events.flush(self.uow)
        return self.uow.claim_event_heads(limit)

    def get_events(self, seqs: Collection[int]) -> list[Event]:
        """Events by seq (from the store, after writing what is held)."""
        self.cache.new_events.flush(self.uow)
        return self.uow.get_events(seqs)

    def mark_events_processed(self, seqs: Sequence[int]) -> None:
        """Mark events applied (written through, after the events held)."""
        self.cache.new_events.flush(self.uow)
        self.uow.mark_events_processed(seqs)

    def contact_events(
        self,
        contact_id: str,
        *,
        names: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Event]:
        """A contact's events by event time (then seq), filtered as the store filters."""
        entry = self._entry(contact_id)
        if entry.events is None:
            if self._history_is_empty(contact_id):
                entry.events = []
            else:
                self.cache.new_events.flush(self.uow)
                entry.events = self.uow.contact_events(contact_id)
        if names is None and since is None and until is None:
            return list(entry.events)
        return [
            e
            for e in entry.events
            if (names is None or e.name in names)
            and (since is None or e.occurred_at >= since)
            and (until is None or e.occurred_at <= until)
        ]

    def _history_is_empty(self, contact_id: str) -> bool:
        """Whether the store surely holds no event of this contact (known without a query)."""
        return self.cache.fresh and contact_id not in self.cache.with_events

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
        """A page of events (from the store, after writing what is held)."""
        self.cache.new_events.flush(self.uow)
        return self.uow.list_events(
            contact_id=contact_id, names=names, start=start, end=end, limit=limit, offset=offset
        )

    # -------------------------------------------------------------- runs

    def save_runs(self, runs: Sequence[Run]) -> None:
        """Insert or replace runs (written at the flush); the indexes follow."""
        waiting = self._waiting()
        for run in runs:
            self.cache.dirty_runs[run.id] = run
            self._index(run)
            if run.status is RunStatus.waiting and run.due_at is not None:
                # Always pushed: a claimed run left the heap, even if its due time is the same.
                heapq.heappush(self.cache.due, (run.due_at, run.id))
                waiting[run.id] = run
            else:
                waiting.pop(run.id, None)

    def _index(self, run: Run) -> None:
        entry = self._entry(run.contact_id)
        if entry.active is None or entry.last is None:
            self._load_runs(run.contact_id, entry)
            assert entry.active is not None and entry.last is not None
        if run.is_active:
            entry.active[run.id] = run
        else:
            entry.active.pop(run.id, None)
        key = (run.workflow_id, run.key)
        newest = entry.last.get(key)
        if newest is None or newest.id == run.id or _run_order(run) > _run_order(newest):
            entry.last[key] = run

    def _load_runs(self, contact_id: str, entry: _Entry) -> None:
        self._flush_runs()
        entry.active = {r.id: r for r in self.uow.runs_for_contact(contact_id)}
        entry.last = {(r.workflow_id, r.key): r for r in self.uow.last_runs(contact_id)}

    def _flush_runs(self) -> None:
        if self.cache.dirty_runs:
            self.uow.save_runs(list(self.cache.dirty_runs.values()))
            self.cache.dirty_runs.clear()

    def get_run(self, run_id: str) -> Run | None:
        """One run by id."""
        if run_id in self.cache.dirty_runs:
            return self.cache.dirty_runs[run_id]
        return self.uow.get_run(run_id)

    def runs_for_contact(self, contact_id: str, *, active_only: bool = True) -> list[Run]:
        """A contact's runs, oldest first (by start, then id)."""
        if not active_only:
            self._flush_runs()
            return self.uow.runs_for_contact(contact_id, active_only=False)
        entry = self._entry(contact_id)
        if entry.active is None:
            self._load_runs(contact_id, entry)
            assert entry.active is not None
        return sorted(entry.active.values(), key=_run_order)

    def last_runs(self, contact_id: str) -> list[Run]:
        """The newest run of each (workflow, key), oldest first."""
        entry = self._entry(contact_id)
        if entry.last is None:
            self._load_runs(contact_id, entry)
            assert entry.last is not None
        return sorted(entry.last.values(), key=_run_order)

    def _waiting(self) -> dict[str, Run]:
        if self.cache.waiting is None:
            self._flush_runs()
            # Claiming with no bound lists every waiting run (and holds them, on PostgreSQL).
            found = self.uow.claim_due_runs(_FAR, _ALL)
            self.cache.waiting = {r.id: r for r in found}
            self.cache.due = [(r.due_at, r.id) for r in found if r.due_at is not None]
            heapq.heapify(self.cache.due)
        return self.cache.waiting

    def claim_due_runs(self, now: datetime, limit: int) -> list[Run]:
        """Waiting runs with `due_at <= now`, earliest first (then by id)."""
        waiting, due = self._waiting(), self.cache.due
        claimed: list[Run] = []
        seen: set[str] = set()
        while due and len(claimed) < limit and due[0][0] <= now:
            at, run_id = heapq.heappop(due)
            run = waiting.get(run_id)
            if run is None or run.due_at != at or run_id in seen:
                continue  # stale: the run moved on since this was pushed
            seen.add(run_id)
            claimed.append(run)
        return claimed

    def next_due_at(self) -> datetime | None:
        """The earliest due time of any waiting run."""
        waiting, due = self._waiting(), self.cache.due
        while due:
            at, run_id = due[0]
            run = waiting.get(run_id)
            if run is not None and run.due_at == at:
                return at
            heapq.heappop(due)
        return None

    def runs_off_version(self, workflow_id: str, version: str, limit: int) -> list[Run]:
        """Waiting runs of this workflow on any other version (from the store)."""
        self._flush_runs()
        return self.uow.runs_off_version(workflow_id, version, limit)

    def run_counts(self) -> list[RunCount]:
        """Runs per workflow, status and step (from the store)."""
        self._flush_runs()
        return self.uow.run_counts()

    # -------------------------------------------------------------- trace, outbox, versions

    def add_trace(self, entries: Sequence[TraceEntry]) -> None:
        """Append trace entries (written at the flush)."""
        self.cache.trace.extend(entries)

    def trace_for_contact(
        self, contact_id: str, workflow_id: str | None = None
    ) -> list[TraceEntry]:
        """A contact's trace (from the store, after writing what is pending)."""
        if self.cache.trace:
            self.uow.add_trace(self.cache.trace)
            self.cache.trace = []
        return self.uow.trace_for_contact(contact_id, workflow_id)

    def add_messages(self, messages: Sequence[Message]) -> int:
        """Insert messages whose key is new (on a fresh store, written at the flush)."""
        if not self.cache.fresh:
            return self.uow.add_messages(messages)
        added = 0
        for message in messages:
            if message.key not in self.cache.message_keys:
                self.cache.message_keys.add(message.key)
                self.cache.messages[message.key] = message
                added += 1
        return added

    def _flush_messages(self) -> None:
        if self.cache.messages:
            self.uow.add_messages(list(self.cache.messages.values()))
            self.cache.messages.clear()

    def claim_messages(self, now: datetime, limit: int, lease: timedelta) -> list[Message]:
        """Due messages (from the store)."""
        self._flush_messages()
        return self.uow.claim_messages(now, limit, lease)

    def save_message(self, message: Message) -> None:
        """Replace a message's delivery state (in the pending insert when it is not written yet)."""
        if message.key in self.cache.messages:
            self.cache.messages[message.key] = message
        else:
            self.uow.save_message(message)

    def get_message(self, key: str) -> Message | None:
        """One message by key."""
        return self.cache.messages.get(key) or self.uow.get_message(key)

    def messages_for_contact(self, contact_id: str) -> list[Message]:
        """A contact's messages, oldest first."""
        self._flush_messages()
        return self.uow.messages_for_contact(contact_id)

    def next_message_due_at(self) -> datetime | None:
        """When the earliest pending message may next be attempted."""
        self._flush_messages()
        return self.uow.next_message_due_at()

    def save_workflow_version(self, workflow_id: str, version: str, source: str) -> None:
        """Keep a version's source."""
        self.uow.save_workflow_version(workflow_id, version, source)

    def get_workflow_version(self, workflow_id: str, version: str) -> str | None:
        """The source of a kept version."""
        return self.uow.get_workflow_version(workflow_id, version)


def _run_order(run: Run) -> tuple[datetime, str]:
    return (run.started_at, run.id)


def _event_order(event: Event) -> tuple[datetime, int]:
    return (event.occurred_at, event.seq or 0)
