"""Counters for `/metrics`, fed by watching what commits through the store.

`MeteredStore` wraps any `Store`: every unit of work is observed (events added and processed,
trace entries, messages queued and their delivery state saved), and the counts are added to
`Metrics` only once the transaction committed, so a rolled-back attempt never counts. Engine,
ingestion and delivery need no metrics code of their own.

Counters are this process's since it started (Prometheus handles resets); gauges that describe
the whole system (runs waiting, timer lag) are read from the store at scrape time by the ops
routes. The text exposition format is written by hand: it is a few lines of text.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from tidings.model.events import Event
from tidings.model.messages import Message, MessageStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import KeptConnection, NumberedEvent, Store, UnitOfWork
from tidings.service.batch_reads import save_messages

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Family:
    """One metric family: its name, type and help text."""

    name: str
    kind: str  # counter | gauge
    help: str
    labelled: bool = False  # every series has labels: with none yet, print no sample at all


COUNTERS = {
    f.name: f
    for f in (
        Family("tidings_events_ingested_total", "counter", "Events stored (duplicates not)."),
        Family("tidings_events_processed_total", "counter", "Events applied to the workflows."),
        Family("tidings_runs_started_total", "counter", "Runs started, per workflow.", True),
        Family("tidings_runs_exited_total", "counter", "Runs ended by a goal or exit.", True),
        Family("tidings_runs_finished_total", "counter", "Runs ended otherwise.", True),
        Family("tidings_sends_skipped_total", "counter", "Sends skipped, per workflow.", True),
        Family("tidings_messages_queued_total", "counter", "Messages recorded in the outbox."),
        Family("tidings_messages_sent_total", "counter", "Messages delivered.", True),
        Family("tidings_messages_failed_total", "counter", "Messages failed for good.", True),
        Family("tidings_messages_cancelled_total", "counter", "Messages recalled, not sent.", True),
        Family(
            "tidings_messages_deferred_total", "counter", "Attempts deferred for a retry.", True
        ),
        Family("tidings_engine_passes_total", "counter", "Engine passes (events and timers)."),
        Family("tidings_alarm_wakes_total", "counter", "Times the alarm woke the engine."),
    )
}


class Metrics:
    """Thread-safe counters, and the Prometheus text of counters and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {name: {} for name in COUNTERS}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add to a counter (one of COUNTERS)."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0) + amount

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (0 when never incremented)."""
        with self._lock:
            return self._values[name].get(tuple(sorted(labels.items())), 0)

    def exposition(self, gauges: Sequence[tuple[Family, dict[Labels, float]]] = ()) -> str:
        """The Prometheus text format (version 0.0.4) of every counter and the given gauges."""
        with self._lock:
            counters = [(COUNTERS[name], dict(series)) for name, series in self._values.items()]
        lines: list[str] = []
        for family, series in [*counters, *gauges]:
            lines.append(f"# HELP {family.name} {family.help}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            samples = series if series or family.labelled else {(): 0.0}
            for labels, number in sorted(samples.items()):
                lines.append(f"{family.name}{_labels(labels)} {_number(number)}")
        return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Observed:
    """What one unit of work did, held until it commits."""

    def __init__(self) -> None:
        self.counts: list[tuple[str, float, dict[str, str]]] = []

    def add(self, name: str, amount: float = 1, **labels: str) -> None:
        if amount:
            self.counts.append((name, amount, labels))


class MeteredUnitOfWork:
    """A unit of work that notes what it writes; everything else passes straight through."""

    def __init__(self, inner: UnitOfWork, observed: _Observed) -> None:
        self._inner = inner
        self._observed = observed

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._inner, name)
        if name == "add_numbered_events":
            # An optional port (`EventNumbering`): offered only when the inner one offers it,
            # and its events, all new, counted as `add_event` counts them.
            return self._counting_numbered(found)
        return found

    def _counting_numbered(
        self, add_numbered_events: Callable[[Sequence[NumberedEvent]], None]
    ) -> Callable[[Sequence[NumberedEvent]], None]:
        def add(events: Sequence[NumberedEvent]) -> None:
            add_numbered_events(events)
            self._observed.add("tidings_events_ingested_total", len(events))

        return add

    def add_event(
        self, event: Event, *, dedup_key: str | None = None, processed: bool = False
    ) -> tuple[Event, bool]:
        """Store an event, counting it when it is new (history is not counted as processed:
        no workflow applied it)."""
        stored, is_new = self._inner.add_event(event, dedup_key=dedup_key, processed=processed)
        if is_new:
            self._observed.add("tidings_events_ingested_total")
        return stored, is_new

    def mark_events_processed(self, seqs: Sequence[int]) -> None:
        """Mark events processed, counting them."""
        self._inner.mark_events_processed(seqs)
        self._observed.add("tidings_events_processed_total", len(seqs))

    def add_trace(self, entries: Sequence[TraceEntry]) -> None:
        """Append trace entries, counting runs started and ended and sends skipped."""
        self._inner.add_trace(entries)
        for entry in entries:
            workflow = entry.workflow_id
            if entry.kind is TraceKind.run_started:
                self._observed.add("tidings_runs_started_total", workflow=workflow)
            elif entry.kind is TraceKind.exited:
                self._observed.add("tidings_runs_exited_total", workflow=workflow)
            elif entry.kind is TraceKind.finished:
                outcome = str(entry.data.get("outcome", "finished"))
                self._observed.add(
                    "tidings_runs_finished_total", workflow=workflow, outcome=outcome
                )
            elif entry.kind is TraceKind.skip:
                self._observed.add("tidings_sends_skipped_total", workflow=workflow)

    def add_messages(self, messages: Sequence[Message]) -> int:
        """Queue messages, counting the new ones."""
        added = self._inner.add_messages(messages)
        self._observed.add("tidings_messages_queued_total", added)
        return added

    def save_message(self, message: Message) -> None:
        """Save a delivery state, counting sent, failed, cancelled and deferred per channel."""
        self._inner.save_message(message)
        self._count_saved(message)

    def save_messages(self, messages: Sequence[Message]) -> None:
        """Save delivery states together, counting each as `save_message` does."""
        save_messages(self._inner, messages)
        for message in messages:
            self._count_saved(message)

    def _count_saved(self, message: Message) -> None:
        channel = message.channel.value
        if message.status is MessageStatus.sent:
            self._observed.add("tidings_messages_sent_total", channel=channel)
        elif message.status is MessageStatus.failed:
            self._observed.add("tidings_messages_failed_total", channel=channel)
        elif message.status is MessageStatus.cancelled:
            self._observed.add("tidings_messages_cancelled_total", channel=channel)
        elif message.status is MessageStatus.pending and message.last_error:
            self._observed.add("tidings_messages_deferred_total", channel=channel)


class MeteredStore:
    """A `Store` whose committed writes are counted in `metrics`."""

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """The inner store's unit of work, observed; counted after it commits."""
        observed = _Observed()
        with self.inner.transaction() as uow:
            yield MeteredUnitOfWork(uow, observed)
        # Reached only when the block and the commit both succeeded.
        for name, amount, labels in observed.counts:
            self.metrics.inc(name, amount, **labels)

    @contextmanager
    def kept_connection(self) -> Iterator[Store]:
        """The inner store's kept connection (`KeptConnection`), metered as this store is; this
        store itself where the inner one keeps none. Without it the delivery worker, which the
        daemon hands this store, would check a pooled connection out for every transaction."""
        if not callable(getattr(type(self.inner), "kept_connection", None)):
            yield self
            return
        with cast(KeptConnection, self.inner).kept_connection() as kept:
            yield self if kept is self.inner else MeteredStore(kept, self.metrics)
