"""Event files into the store: read and checked as the API checks them, then stored as history
(`import`) or replayed through the workflows in virtual time (`simulate`).

Reading: every row becomes an event (validated by the same code as `POST /v3/events`, with the
row's stable id), a refused row (line number and reason) or a skipped row (an event name the
mapping leaves out, counted by reason). Nothing is dropped silently. Events are kept compressed
(`PackedEvents`) and handed out stably by event time, so a replay sees them in time order
whatever order the file has (a merged order is emitted after its last row, dated at its first).

Writing: a chunk of events per transaction. Each event is ingested as `IngestService` would
(`replay_ingest`: contact resolution, `contact_properties`, deduplication: the row's id is its
idempotency key, so a file stored twice is stored once) inside that transaction, then, when
replaying, straight to the processor in virtual time (timers due before it fire first, at their
own due time). Ingesting one event at a time keeps contact attributes exactly as they were at
each event's date.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tidings.errors import ConfigError, EventError
from tidings.model.events import Event
from tidings.ports import Clock, Store, UnitOfWork
from tidings.service import validation as v
from tidings.service.contacts import random_contact_id
from tidings.service.csv_mapping import Mapping
from tidings.service.event_files import CsvReader, SourceRow, open_text, read_jsonl
from tidings.service.packed_events import PackedEvents
from tidings.service.processing import Processor
from tidings.service.replay_cache import ReplayCache
from tidings.service.replay_ingest import ReplayIngest
from tidings.service.shapes import brevo_event
from tidings.service.validation import Limits

CHUNK = 2000
"""Events per transaction: commits (an fsync each) stay rare."""
PROGRESS = 200  # events between two reports of progress

_ANY_DATE = Limits(future_tolerance=timedelta.max)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True, order=True)
class RowProblem:
    """A row that did not become a stored event: its line in the file and why."""

    line: int
    reason: str


@dataclass
class EventFile:
    """What reading a file gave: its events (held compressed), refusals, skips."""

    records: int = 0  # events read plus rows refused or skipped
    lines: int = 0  # data lines of the file (more than records when lines merge)
    refused: list[RowProblem] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    packed: PackedEvents = field(default_factory=PackedEvents)

    def __len__(self) -> int:
        return len(self.packed)

    @property
    def first(self) -> datetime | None:
        """The earliest event time."""
        return self.packed.first

    @property
    def last(self) -> datetime | None:
        """The latest event time."""
        return self.packed.last

    def events(self) -> Iterator[tuple[int, Event]]:
        """(line, event) in event-time order (file order among events of the same time)."""
        return self.packed.in_order()


class FileRows:
    """The rows of a JSONL file, or of a CSV file through its mapping. Once read, `lines` is
    how many data lines the file had (blank lines and the CSV header aside): more than the
    rows when the mapping merges several lines into one event."""

    def __init__(self, path: Path, mapping: Mapping | None) -> None:
        if mapping is None and path.suffix.lower() not in _JSONL_SUFFIXES:
            raise ConfigError(f"{path}: a CSV file needs a column mapping (--mapping MAP.yaml)")
        self.path = path
        self.mapping = mapping
        self.lines = 0

    def __iter__(self) -> Iterator[SourceRow]:
        try:
            with open_text(self.path) as handle:
                lines = self._counted(handle)
                if self.mapping is None:
                    yield from read_jsonl(lines)
                else:
                    yield from CsvReader(self.mapping).read(lines)
                    self.lines = max(self.lines - 1, 0)  # the header
        except OSError as exc:
            raise ConfigError(f"{self.path}: {exc.strerror or exc}") from exc

    def _counted(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            if line.strip():
                self.lines += 1
            yield line


def read_rows(path: Path, mapping: Mapping | None) -> FileRows:
    """The rows of a JSONL file, or of a CSV file through its mapping."""
    return FileRows(path, mapping)


def read_events(
    rows: Iterable[SourceRow],
    *,
    limits: Limits,
    source: str,
    received_at: datetime | None = None,
) -> EventFile:
    """Check every row as the API would. With `received_at` None (a replay) each event is
    received at its own date and must have one; else undated events take `received_at`."""
    result = EventFile()
    for row in rows:
        result.records += 1
        if row.skipped:
            result.skipped[row.error or "skipped"] += 1
            continue
        if row.body is None:
            result.refused.append(RowProblem(row.line, row.error or "unreadable"))
            continue
        try:
            event = to_event(row, limits=limits, source=source, received_at=received_at)
        except EventError as exc:
            result.refused.append(RowProblem(row.line, str(exc)))
            continue
        result.packed.append(event, row.line)
    result.lines = rows.lines if isinstance(rows, FileRows) else result.records
    return result


def to_event(
    row: SourceRow, *, limits: Limits, source: str, received_at: datetime | None = None
) -> Event:
    """A row's body as an Event with the row's stable id (EventError names a bad field)."""
    body = v.expect_object(row.body, "body")
    now = received_at
    if now is None:
        raw = body.get("event_date")
        if v.is_absent(raw):
            raise EventError(
                "event_date", "is required to replay a log (there is no time of receipt)"
            )
        now = v.event_date(raw, "event_date", now=_EPOCH, limits=_ANY_DATE)
    return brevo_event(body, now=now, limits=limits, source=source, event_id=row.event_id)


@dataclass
class StoreTotals:
    """What storing or replaying a file did."""

    stored: int = 0  # new events written to the log
    replayed: int = 0  # of which applied to the workflows in virtual time
    history: int = 0  # of which stored as history only (before --from, or import)
    duplicates: int = 0  # already in the store (same row id): not stored again
    after_until: int = 0  # dated after --until: not replayed, not stored
    timers: int = 0
    messages: int = 0
    refused: list[RowProblem] = field(default_factory=list)  # refused by ingestion
    end: datetime | None = None  # the virtual time the replay stopped at


class Writer:
    """Stores events one chunk per transaction, as history or replayed in virtual time."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        limits: Limits,
        new_contact_id: Callable[[], str] | None = None,
        key_id: str = "file",
        chunk: int = CHUNK,
        cache: ReplayCache | None = None,
    ) -> None:
        self.store = store
        self.cache = cache
        self.clock = clock
        self.limits = limits
        self.new_contact_id = new_contact_id
        self.key_id = key_id
        self.chunk = chunk

    def store_history(
        self,
        events: Iterable[tuple[int, Event]],
        *,
        processed: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> StoreTotals:
        """Store events; `processed` marks them applied, so they start nothing (history)."""
        totals = StoreTotals()
        for part in _chunks(events, self.chunk):
            with self.store.transaction() as uow:
                ingest = self._ingest_service(uow)
                for line, event in part:
                    stored = self._ingest(ingest, line, event, totals, history=processed)
                    if stored is not None and processed:
                        totals.history += 1
            if progress is not None:
                progress(len(part))
        return totals

    def replay(
        self,
        events: Iterable[tuple[int, Event]],
        processor: Processor,
        *,
        start: datetime | None = None,
        until: datetime | None = None,
        progress: Callable[[int], None] | None = None,
        before_commit: Callable[[UnitOfWork], None] | None = None,
    ) -> StoreTotals:
        """Replay events (in time order) through the workflows in virtual time; events before
        `start` are stored as history, events after `until` are left out. After the last event
        the clock runs on through due timers until none is left (or until `until`)."""
        totals = StoreTotals()
        names = processor.event_names
        for part in _chunks(events, self.chunk):
            with self._transaction() as uow:
                ingest = self._ingest_service(uow)
                seqs: list[int] = []
                for line, event in _reporting(part, progress):
                    if until is not None and event.occurred_at > until:
                        totals.after_until += 1
                        continue
                    if start is not None and event.occurred_at < start:
                        if self._ingest(ingest, line, event, totals, history=True) is not None:
                            totals.history += 1
                        continue
                    # Timers due before the event fire first, before it is even stored.
                    fired = processor.fire_due(uow, before=event.occurred_at)
                    totals.timers += fired.timers
                    totals.messages += fired.messages
                    stored = self._ingest(ingest, line, event, totals)
                    if stored is None:
                        continue
                    stats = processor.replay_event(uow, stored, names)
                    totals.messages += stats.messages
                    totals.replayed += 1
                    seqs.append(stored.seq or 0)
                    totals.end = event.occurred_at
                uow.mark_events_processed(seqs)
                if before_commit is not None:
                    before_commit(uow)
        self._run_out(processor, until, totals, before_commit)
        return totals

    def _run_out(
        self,
        processor: Processor,
        until: datetime | None,
        totals: StoreTotals,
        before_commit: Callable[[UnitOfWork], None] | None,
    ) -> None:
        """After the last event: fire what is due, in chunks, up to `until` or until none."""
        while True:
            with self._transaction() as uow:
                fired = processor.fire_due(uow, until=until, limit=self.chunk)
                if fired.last_due is not None:
                    totals.end = fired.last_due
                if before_commit is not None:
                    before_commit(uow)
            totals.timers += fired.timers
            totals.messages += fired.messages
            if fired.timers < self.chunk:
                break
        if until is not None:
            totals.end = until

    @contextmanager
    def _transaction(self) -> Iterator[UnitOfWork]:
        """A transaction, through the replay cache when there is one (flushed at the end)."""
        with self.store.transaction() as raw:
            if self.cache is None:
                yield raw
                return
            cached = self.cache.bind(raw)
            yield cached
            cached.flush()

    def _ingest_service(self, uow: UnitOfWork) -> ReplayIngest:
        """Ingestion writing into the caller's open transaction."""
        new_id = self.new_contact_id if self.new_contact_id is not None else random_contact_id
        return ReplayIngest(uow, new_id, key_id=self.key_id)

    def _ingest(
        self,
        ingest: ReplayIngest,
        line: int,
        event: Event,
        totals: StoreTotals,
        *,
        history: bool = False,
    ) -> Event | None:
        """Store one event (`history`: as already processed); the stored event when new, None
        when refused or a duplicate."""
        try:
            stored = ingest.store(event, history=history)
        except EventError as exc:
            totals.refused.append(RowProblem(line, str(exc)))
            return None
        if stored is None:
            totals.duplicates += 1
            return None
        totals.stored += 1
        return stored


def _reporting(
    part: Sequence[tuple[int, Event]], progress: Callable[[int], None] | None
) -> Iterator[tuple[int, Event]]:
    """The chunk's events, telling `progress` every PROGRESS events (a progress bar moves)."""
    for number, item in enumerate(part, start=1):
        yield item
        if progress is not None and number % PROGRESS == 0:
            progress(PROGRESS)
    if progress is not None and len(part) % PROGRESS:
        progress(len(part) % PROGRESS)


def _chunks(items: Iterable[tuple[int, Event]], size: int) -> Iterator[Sequence[tuple[int, Event]]]:
    batch: list[tuple[int, Event]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
