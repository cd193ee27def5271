"""`import`'s composition: events from a file into a database, or into a running daemon.

Into a database (`--database`, default the configured one): each event goes through ingestion
(contacts created or found, `contact_properties` applied, a row stored twice is stored once:
its id is its idempotency key) in transactions of a few hundred events. By default the events
are stored as already processed: history that `has_event` and `count_events` see, starting
nothing. With `trigger`, they are stored unprocessed, and the daemon applies them to the
workflows (runs start when it processes them; their waits count from then).

Into a daemon (`--url`): `POST /v3/events/batch`, a batch at a time, with `X-Tidings-Mode:
history` by default: the daemon stores the events as already processed, exactly as above, and
its workflows never apply them. With `trigger` the header is left out and the daemon applies
every event it accepts, as for any client. A row refused by the daemon is reported with its
line and the rest of its batch is sent again.

Either way rows are read and checked as the API checks them (same code), events go in time
order, and every refused or skipped row is reported with its line number.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tidings.adapters.clock import SystemClock
from tidings.adapters.events_client import EventsClient
from tidings.adapters.sql.store import SqlStore
from tidings.errors import EventError
from tidings.service.csv_mapping import load_mapping
from tidings.service.event_files import SourceRow
from tidings.service.replay import RowProblem, Writer, read_events, read_rows, to_event
from tidings.service.validation import Limits
from tidings.settings import Settings

SOURCE = "import"
BATCH = 500  # events per transaction or per HTTP batch (the API takes up to 1000)
MAX_BATCH_BYTES = 8 * 1024 * 1024  # under the daemon's 10 MiB default for a batch body


@dataclass
class ImportResult:
    """What an import did."""

    rows: int = 0  # data lines of the file
    events: int = 0  # valid events (a merged order is one event of several rows)
    # New events stored (database), or accepted by the daemon (HTTP: repeats count too).
    stored: int = 0
    duplicates: int = 0  # already in the database: not stored again
    refused: list[RowProblem] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    triggered: bool = False  # whether the workflows see the events


def limits_of(settings: Settings) -> Limits:
    """The ingestion limits the settings ask for."""
    return Limits(future_tolerance=timedelta(seconds=settings.event_date_tolerance_s))


def import_into_database(
    events_file: Path,
    mapping: Path | None,
    database_url: str,
    settings: Settings,
    *,
    trigger: bool = False,
    on_read: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Store a file's events in a database: history only, or for the workflows (`trigger`)."""
    clock = SystemClock()
    rules = load_mapping(mapping) if mapping is not None else None
    limits = limits_of(settings)
    read = read_events(
        read_rows(events_file, rules), limits=limits, source=SOURCE, received_at=clock.now()
    )
    if on_read is not None:
        on_read(len(read))
    store = SqlStore(database_url)
    try:
        if settings.migrate_on_start:
            store.migrate()
        # Short transactions: a daemon using the same database waits for each one.
        writer = Writer(store, clock, limits=limits, key_id=SOURCE, chunk=BATCH)
        totals = writer.store_history(read.events(), processed=not trigger, progress=progress)
    finally:
        store.close()
    return ImportResult(
        rows=read.lines,
        events=len(read),
        stored=totals.stored,
        duplicates=totals.duplicates,
        refused=sorted([*read.refused, *totals.refused]),
        skipped=read.skipped,
        triggered=trigger,
    )


@dataclass(frozen=True)
class _Item:
    line: int
    event_id: str
    body: dict[str, Any]
    size: int


def import_over_http(
    events_file: Path,
    mapping: Path | None,
    client: EventsClient,
    settings: Settings,
    *,
    on_read: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    batch: int = BATCH,
) -> ImportResult:
    """Send a file's events to a running daemon: as history when the client says so, else for
    its workflows to apply."""
    now = SystemClock().now()
    limits = limits_of(settings)
    rules = load_mapping(mapping) if mapping is not None else None
    result = ImportResult(triggered=not client.history)
    items: list[tuple[datetime, _Item]] = []
    rows = read_rows(events_file, rules)
    for row in rows:
        checked = _checked(row, limits, now, result)
        if checked is not None:
            items.append(checked)
    items.sort(key=lambda pair: pair[0])
    result.rows = rows.lines
    result.events = len(items)
    if on_read is not None:
        on_read(len(items))
    for part in _batches([item for _, item in items], batch):
        result.stored += _send(client, part, result)
        if progress is not None:
            progress(len(part))
    result.refused.sort()
    return result


def _checked(
    row: SourceRow, limits: Limits, now: datetime, result: ImportResult
) -> tuple[datetime, _Item] | None:
    """The row as a body to send, checked here first so one bad row never costs its batch."""
    if row.skipped:
        result.skipped[row.error or "skipped"] += 1
        return None
    if row.body is None:
        result.refused.append(RowProblem(row.line, row.error or "unreadable"))
        return None
    try:
        event = to_event(row, limits=limits, source=SOURCE, received_at=now)
    except EventError as exc:
        result.refused.append(RowProblem(row.line, str(exc)))
        return None
    size = len(json.dumps(row.body))
    return event.occurred_at, _Item(row.line, row.event_id, row.body, size)


def _batches(items: Sequence[_Item], size: int) -> Iterator[list[_Item]]:
    """Batches of at most `size` events and MAX_BATCH_BYTES of JSON."""
    part: list[_Item] = []
    weight = 0
    for item in items:
        if part and (len(part) >= size or weight + item.size > MAX_BATCH_BYTES):
            yield part
            part, weight = [], 0
        part.append(item)
        weight += item.size
    if part:
        yield part


def _send(client: EventsClient, part: list[_Item], result: ImportResult) -> int:
    """Post a batch; refused items are reported and the others sent again. Returns accepted."""
    while part:
        answer = client.post_batch([i.body for i in part], [i.event_id for i in part])
        if not answer.refused:
            return answer.accepted
        for index, reason in sorted(answer.refused.items()):
            if 0 <= index < len(part):
                result.refused.append(RowProblem(part[index].line, reason))
        part = [item for index, item in enumerate(part) if index not in answer.refused]
    return 0
