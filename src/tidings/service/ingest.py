"""Ingestion: validated events become durable rows, attached to contacts, each stored once.

`IngestService.ingest(submission)` returns only after the transaction holding the events has
committed (through the group-commit writer, so concurrent requests share transactions). Events
are stored unprocessed and the engine consumes them later, unless the submission is `history`:
then its events are stored already processed (one row, one write), so conditions such as
`has_event` see them and no workflow ever applies them (`import`, `X-Tidings-Mode: history`).

Duplicates (docs/ingestion.md) are recognised three ways, strongest first:
- an explicit key: `Idempotency-Key` header (`idem:<api key id>:<value>[:<index>]`) or the
  tracker's `eventdata.id` (`trk:<key id>:<contact digest>:<value>`, so one key or visitor
  cannot shadow another's events), as the store's unique dedup key: exact, durable;
- otherwise the same event (name, identifiers, properties, contact properties, object, and
  event date if one was given) stored within the duplicate window: a sliding window, from the
  process's index of recent content digests (`RecentEvents`), and for dated events also from
  the store (same contact, same name, same instant), which survives restarts;
- and a store dedup key from (api key id, exact body bytes, window bucket), so identical
  requests racing through two processes, or a repeat after a restart within the same bucket,
  still collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tidings.errors import EventError
from tidings.model.events import Event
from tidings.ports import Clock, Store, UnitOfWork
from tidings.service.contacts import (
    ContactBook,
    check_contact_ids,
    conflict_trace,
    contact_book,
    random_contact_id,
    resolve,
)
from tidings.service.group_commit import GroupCommitWriter
from tidings.service.ingest_writes import IngestWrites
from tidings.service.recent import RecentEvents, content_digest
from tidings.service.validation import Limits

MAX_IDEMPOTENCY_KEY_CHARS = 255


@dataclass(frozen=True)
class Submission:
    """One request's events and how each one is recognised if it was seen before."""

    events: tuple[Event, ...]
    dedup_keys: tuple[str | None, ...]
    match_content: bool
    batch: bool = False
    history: bool = False  # stored as already processed: seen by conditions, starts nothing


@dataclass(frozen=True)
class Outcome:
    """What a submission came to: the events as stored, and how many were new."""

    events: tuple[Event, ...] = ()
    stored: int = 0
    duplicates: int = 0
    new_contacts: int = 0
    conflicts: dict[str, dict[str, str]] = field(default_factory=dict)


def body_digest(body: bytes) -> str:
    """The hash of a request body as received, byte for byte."""
    return hashlib.sha256(body).hexdigest()


def contact_scope(event: Event) -> str:
    """A fixed-length digest of the identifiers an event was sent with (scopes `eventdata.id`)."""
    ids = "\n".join(f"{kind.value}={value}" for kind, value in sorted(event.identifiers.items()))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def dedup_keys(
    count: int,
    *,
    key_id: str,
    received_at: datetime,
    window: timedelta,
    body: bytes,
    idempotency_key: str | None = None,
    tracker_ids: Sequence[str | None] | None = None,
    contact_scopes: Sequence[str] | None = None,
    batch: bool = False,
) -> tuple[tuple[str | None, ...], bool]:
    """Dedup keys for `count` events of one request, and whether to match by content too."""
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > MAX_IDEMPOTENCY_KEY_CHARS:
            raise EventError(
                "Idempotency-Key",
                f"must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} characters",
            )
        base = f"idem:{key_id}:{idempotency_key}"
        return tuple(f"{base}:{i}" if batch else base for i in range(count)), False
    if tracker_ids is not None and any(t is not None for t in tracker_ids):
        scopes = contact_scopes if contact_scopes is not None else ("",) * count
        return tuple(
            f"trk:{key_id}:{scope}:{t}" if t is not None else None
            for t, scope in zip(tracker_ids, scopes, strict=True)
        ), False
    bucket = int(received_at.timestamp() // max(window.total_seconds(), 1))
    base = f"body:{key_id}:{body_digest(body)[:32]}:{bucket}"
    return tuple(f"{base}:{i}" if batch else base for i in range(count)), True


def same_event(a: Event, b: Event) -> bool:
    """Whether two events carry the same content (ids, seq and receipt time aside)."""
    return (
        a.name == b.name
        and a.identifiers == b.identifiers
        and a.occurred_at == b.occurred_at
        and a.properties == b.properties
        and a.contact_properties == b.contact_properties
        and a.object == b.object
        and a.source == b.source
    )


@dataclass
class _Group:
    """One ingest transaction: its unit of work, contacts and new events, and the digests of
    the events it stored (submission index, receipt time)."""

    uow: UnitOfWork
    book: ContactBook
    writes: IngestWrites
    pending: dict[str, tuple[int, datetime]] = field(default_factory=dict)

    def flush(self) -> None:
        """Write what is held: the events, then the contacts they changed."""
        self.writes.flush()
        self.book.flush()


class IngestService:
    """Turns validated events into committed rows; one writer per process shares commits."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        limits: Limits | None = None,
        duplicate_window: timedelta = timedelta(minutes=5),
        new_contact_id: Callable[[], str] = random_contact_id,
        max_group_events: int = 5000,
    ) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits or Limits()
        self.duplicate_window = duplicate_window
        self._new_contact_id = new_contact_id
        self.recent = RecentEvents(duplicate_window)
        self.writer: GroupCommitWriter[Submission, Outcome] = GroupCommitWriter(
            self.write, max_group=max_group_events, weight=lambda s: max(1, len(s.events))
        )

    def submission(
        self,
        events: Sequence[Event],
        *,
        key_id: str,
        body: bytes,
        idempotency_key: str | None = None,
        tracker_ids: Sequence[str | None] | None = None,
        batch: bool = False,
        history: bool = False,
    ) -> Submission:
        """Package one request's events with their dedup keys (`history`: stored processed)."""
        received = events[0].received_at if events else self.clock.now()
        keys, match_content = dedup_keys(
            len(events),
            key_id=key_id,
            received_at=received,
            window=self.duplicate_window,
            body=body,
            idempotency_key=idempotency_key,
            tracker_ids=tracker_ids,
            contact_scopes=[contact_scope(e) for e in events] if tracker_ids else None,
            batch=batch,
        )
        return Submission(tuple(events), keys, match_content, batch, history)

    async def ingest(self, submission: Submission) -> Outcome:
        """Store a submission; returns once its transaction has committed."""
        return await self.writer.submit(submission)

    def ingest_now(self, submission: Submission) -> Outcome:
        """Store a submission in its own transaction, from synchronous code (e.g. import)."""
        result = self.write([submission])[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def aclose(self) -> None:
        """Finish queued writes and stop the writer."""
        await self.writer.aclose()

    # -- the blocking side, run in a worker thread by the writer ----------------------------

    def write(self, submissions: Sequence[Submission]) -> list[Outcome | Exception]:
        """Write submissions in ONE transaction; if it fails, each alone, so one bad request
        never costs the others their events."""
        try:
            with self.store.transaction() as uow:
                group = self._group(uow, submissions)
                results = [self._apply_checked(group, sub, i) for i, sub in enumerate(submissions)]
                group.flush()
        except Exception as exc:
            if len(submissions) == 1:
                return [exc]
            return [self._write_alone(s) for s in submissions]
        # Only now, committed, may these events make later ones duplicates.
        self.recent.add((digest, at) for digest, (_, at) in group.pending.items())
        return results

    def _write_alone(self, submission: Submission) -> Outcome | Exception:
        try:
            with self.store.transaction() as uow:
                group = self._group(uow, [submission])
                result = self._apply_checked(group, submission, 0)
                group.flush()
        except Exception as exc:
            return exc
        self.recent.add((digest, at) for digest, (_, at) in group.pending.items())
        return result

    def _group(self, uow: UnitOfWork, submissions: Sequence[Submission]) -> _Group:
        events = [event for submission in submissions for event in submission.events]
        return _Group(
            uow,
            contact_book(uow, events, self._new_contact_id),
            IngestWrites(uow, [key for sub in submissions for key in sub.dedup_keys]),
        )

    def _apply_checked(
        self, group: _Group, submission: Submission, index: int
    ) -> Outcome | Exception:
        try:
            # Only reads happen before this check, so refusing here leaves no partial write.
            check_contact_ids(group.book, submission.events, batch=submission.batch)
        except EventError as exc:
            return exc
        return self._apply(group, submission, index)

    def _apply(self, group: _Group, submission: Submission, index: int) -> Outcome:
        """Store one submission's events; `group.pending` collects digests of this transaction
        (submission index, receipt time) so a later submission in it can be a repeat."""
        book, pending = group.book, group.pending
        own_ids = {event.id for event in submission.events}
        stored_events: list[Event] = []
        stored = duplicates = new_contacts = 0
        conflicts: dict[str, dict[str, str]] = {}
        for event, key in zip(submission.events, submission.dedup_keys, strict=True):
            digest = content_digest(event) if submission.match_content else None
            if digest is not None and self._repeat(digest, event, index, pending):
                duplicates += 1  # recognised without touching the store or the contact
                continue
            resolution = resolve(
                event, book.known(event), now=event.received_at, new_id=book.new_id
            )
            contact = resolution.contact
            dated = event.occurred_at != event.received_at
            if (
                digest is not None
                and dated
                and not resolution.is_new
                and self._stored_copy(group, event, contact.id, own_ids) is not None
            ):
                duplicates += 1
                continue
            if resolution.is_new:
                # Saved whatever becomes of its event, and before it: a book that writes at once
                # (over a replay cache) must hold the contact before the event joins its history.
                book.save(contact)
                new_contacts += 1
            saved = group.writes.add(
                event,
                contact_id=contact.id,
                conflicts=resolution.conflicts,
                dedup_key=key,
                processed=submission.history,
            )
            if saved is None:
                duplicates += 1
                continue
            if not resolution.is_new and resolution.changed:
                # Only now: a duplicate must not replay its contact update over later ones.
                book.save(contact)
            stored += 1
            stored_events.append(saved)
            if digest is not None:
                pending.setdefault(digest, (index, event.received_at))
            if resolution.conflicts:
                conflicts[saved.id] = {k.value: v for k, v in resolution.conflicts.items()}
                # The trace says so too, so `explain` shows who holds what (docs/ingestion.md).
                group.uow.add_trace(conflict_trace(saved, resolution))
        return Outcome(tuple(stored_events), stored, duplicates, new_contacts, conflicts)

    def _repeat(
        self,
        digest: str,
        event: Event,
        index: int,
        pending: dict[str, tuple[int, datetime]],
    ) -> bool:
        """Stored within the window, or earlier in this transaction by another request.
        Identical items of one batch are not repeats of each other."""
        earlier = pending.get(digest)
        if earlier is not None and earlier[0] != index:
            return True
        return self.recent.seen(digest, event.received_at)

    def _stored_copy(
        self, group: _Group, event: Event, contact_id: str, own_ids: set[str]
    ) -> Event | None:
        """The same dated event already stored for this contact within the window, if any: one
        indexed query for that exact instant, so it stays cheap however busy the contact is."""
        group.writes.flush()  # the log as it would be had every event been written at once
        since = event.received_at - self.duplicate_window
        candidates = group.uow.contact_events(
            contact_id, names=[event.name], since=event.occurred_at, until=event.occurred_at
        )
        for candidate in candidates:
            if candidate.id in own_ids or candidate.received_at < since:
                continue
            if same_event(candidate, event):
                return candidate
        return None
