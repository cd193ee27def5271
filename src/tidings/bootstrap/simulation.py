"""`simulate`'s composition: the real engine and store, in virtual time, delivering nothing.

It picks the adapters a replay runs on: a `SqlStore` (SQLite in a temporary folder, removed
afterwards, unless a database URL is given: the replay then writes into that database, so give
it a copy), a `ManualClock` set to where virtual time stopped, the workflows and templates from
their folders, and `OutboxDirSender` writing each message as a file into the outbox folder (in
a worker process, see `outbox_writer`). Messages are recorded as sent in the store
(`provider_id` is the file name), so a daemon later pointed at the same database never
delivers them.

Determinism: event ids come from the file (`SourceRow.event_id`), contact ids from a counter in
order of first sight, run ids and message keys from those, times from the events; the report
holds no wall-clock time. The same file, workflows and templates give the same report.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from tidings.adapters.clock import ManualClock
from tidings.adapters.sql.store import SqlStore
from tidings.bootstrap.components import make_environment, run_secret
from tidings.bootstrap.outbox_writer import OutboxSpec, OutboxWriter
from tidings.engine.core import Decision
from tidings.errors import Problem
from tidings.model.messages import Message, MessageStatus
from tidings.ports import UnitOfWork
from tidings.service.consent import ConsentTokens
from tidings.service.csv_mapping import load_mapping
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry
from tidings.service.replay import EventFile, StoreTotals, Writer, read_events, read_rows
from tidings.service.replay_cache import ReplayCache
from tidings.service.simulation_report import (
    SAMPLES,
    ReportBuilder,
    SimulationReport,
    Totals,
    contact_timeline,
    iso,
)
from tidings.service.validation import Limits
from tidings.settings import Settings

SOURCE = "simulate"  # the `source` of replayed events, and the key id of their dedup keys


@dataclass(frozen=True)
class SimulationRequest:
    """What to replay, through which workflows, over which span of time."""

    events: Path
    workflows_dir: Path
    templates_dir: Path
    outbox_dir: Path
    mapping: Path | None = None
    start: datetime | None = None  # events before: stored as history, start nothing
    until: datetime | None = None  # events after: left out; the clock stops here
    database_url: str | None = None  # None: a temporary SQLite file
    contact: str | None = None  # a contact id or identifier whose timeline to report
    samples: int = SAMPLES
    writers: int = 1  # processes writing message files alongside the replay (0: none)


@dataclass
class SimulationResult:
    """The report, the workflows that did not load, and where things were written."""

    report: SimulationReport
    problems: list[Problem] = field(default_factory=list)
    outbox_files: int = 0
    outbox_failed: int = 0  # messages no file could be made of (e.g. a malformed number)
    database_url: str | None = None  # None when the database was temporary (now removed)


class ContactIds:
    """Contact ids in order of first sight: "1", "2", ... (the same run gives the same ids)."""

    def __init__(self) -> None:
        self._next = 0

    def __call__(self) -> str:
        """The next id."""
        self._next += 1
        return str(self._next)


class _Outbox:
    """Collects each chunk's messages, records them as sent, has the writer make the files."""

    def __init__(self, writer: OutboxWriter) -> None:
        self.writer = writer
        self.pending: list[Message] = []
        self.recorded = 0

    def observe(self, _now: datetime, decision: Decision) -> None:
        """Keep the decision's new messages for the next flush (the processor's observer)."""
        self.pending.extend(decision.messages)

    def flush(self, uow: UnitOfWork) -> None:
        """Record the pending messages as sent to their files, then hand them to the writer."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        for message in batch:
            sent = message.model_copy(
                update={
                    "status": MessageStatus.sent,
                    "attempts": message.attempts + 1,
                    "next_attempt_at": None,
                    "sent_at": max(message.not_before, message.created_at),
                    "provider_id": self.writer.file_name(message),
                }
            )
            uow.save_message(sent)
        self.writer.submit(batch)
        self.recorded += len(batch)

    def close(self, store: SqlStore) -> int:
        """Wait for the files; record the messages that could not be written as failed."""
        failed = self.writer.close()
        if failed:
            with store.transaction() as uow:
                for key, reason in failed:
                    message = uow.get_message(key)
                    if message is not None:
                        update = {"status": MessageStatus.failed, "last_error": reason}
                        uow.save_message(message.model_copy(update=update))
        return len(failed)


def read_file(request: SimulationRequest) -> EventFile:
    """The request's event file, read and checked, events in time order."""
    mapping = load_mapping(request.mapping) if request.mapping is not None else None
    return read_events(read_rows(request.events, mapping), limits=Limits(), source=SOURCE)


def simulate(
    request: SimulationRequest,
    settings: Settings,
    events: EventFile,
    *,
    progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Replay `events` (read from `request.events`) in virtual time and report."""
    registry, loaded = WorkflowRegistry.from_directory(request.workflows_dir, request.templates_dir)
    secret = run_secret(settings)
    tokens = ConsentTokens(secret)
    spec = OutboxSpec(str(request.outbox_dir), settings.mail_from, settings.link_base(), secret)
    outbox = _Outbox(OutboxWriter(spec, workers=request.writers))
    builder = ReportBuilder(registry.current, samples=request.samples)

    def observe(now: datetime, decision: Decision) -> None:
        builder.observe(now, decision)
        outbox.observe(now, decision)

    first = events.first or datetime(1970, 1, 1, tzinfo=UTC)
    clock = ManualClock(first)
    with _database(request.database_url) as url:
        store = SqlStore(url)
        try:
            store.migrate()
            registry.record_versions(store)
            env = make_environment(settings, registry, tokens)
            processor = Processor(store, registry, env, clock, observer=observe, virtual_time=True)
            writer = Writer(
                store,
                clock,
                limits=Limits(),
                new_contact_id=ContactIds(),
                key_id=SOURCE,
                cache=ReplayCache(fresh=request.database_url is None),
            )
            written = writer.replay(
                events.events(),
                processor,
                start=request.start,
                until=request.until,
                progress=progress,
                before_commit=outbox.flush,
            )
            if written.end is not None:
                clock.set(written.end)
            report = builder.build(
                source=request.events.name,
                totals=_totals(events, written),
                refused=[*events.refused, *written.refused],
                skipped=events.skipped,
            )
            failed = outbox.close(store)
            if request.contact is not None:
                report = _with_timeline(store, report, request.contact)
        finally:
            outbox.writer.abort()  # a no-op once closed
            store.close()
    return SimulationResult(
        report=report,
        problems=list(loaded.problems),
        outbox_files=outbox.recorded - failed,
        outbox_failed=failed,
        database_url=request.database_url,
    )


@contextmanager
def _database(url: str | None) -> Iterator[str]:
    """The given database URL, or a SQLite file in a temporary folder removed afterwards."""
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="tidings-simulate-") as folder:
        yield f"sqlite:///{Path(folder) / 'simulate.db'}"


def _totals(events: EventFile, written: StoreTotals) -> Totals:
    first, last = events.first, events.last
    return Totals(
        rows=events.lines,
        events=len(events) - len(written.refused),  # so rows = events + refused + skipped
        refused=len(events.refused) + len(written.refused),
        skipped=sum(events.skipped.values()),
        replayed=written.replayed,
        history=written.history,
        duplicates=written.duplicates,
        after_until=written.after_until,
        timers=written.timers,
        messages=written.messages,
        first_event=iso(first),
        last_event=iso(last),
        end=iso(written.end),
    )


def _with_timeline(store: SqlStore, report: SimulationReport, reference: str) -> SimulationReport:
    """The report with a contact's timeline (`contact` None: no contact matches)."""
    with store.transaction() as uow:
        found = contact_timeline(uow, reference)
    if found is None:
        return replace(report, contact=None, timeline=[])
    contact_id, timeline = found
    return replace(report, contact=contact_id, timeline=timeline)
