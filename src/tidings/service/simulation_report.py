"""The simulation report: what each workflow did during a replay, as plain, deterministic data.

`ReportBuilder.observe` is the processor's observer: it sees every decision as it is written
(runs, trace entries, messages), so the report counts exactly what the store received without
reading it all back. Runs are counted when they start (`run_started` trace) and when they end
(by outcome); runs still active at the end are waiting or queued. Skips are trace entries
(`skip`, `trigger_skipped`) grouped by reason, with run ids, event ids, keys and times taken
out of the reason so that alike reasons group. Messages are counted per step, and the first
few of each workflow are kept as samples.

The same input gives the same report, byte for byte: no wall-clock time, no random ids, every
collection sorted or in replay order (which is deterministic).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from tidings.compile.loader import CompiledWorkflow
from tidings.engine.core import Decision
from tidings.engine.positions import PositionError, step_at
from tidings.model.contacts import Contact
from tidings.model.events import IdentifierKind, normalise_identifier
from tidings.model.messages import Message
from tidings.model.runs import Outcome, RunStatus
from tidings.model.trace import TraceKind
from tidings.model.workflow import SendEmailStep, SendSmsStep
from tidings.ports import UnitOfWork
from tidings.service.replay import RowProblem

SAMPLES = 3
SAMPLE_LINES = 4
FIRST_PROBLEMS = 20
SLOT = timedelta(minutes=5)  # resolution of the time series; buckets are whole slots
_SLOT_S = SLOT.total_seconds()

_RUN_ID = re.compile(r"\b[0-9a-f]{20}\b")
_EVENT_ID = re.compile(r"\bL\d+-[0-9a-f]{12}\b|\b[0-9a-f]{32}\b")
_KEY = re.compile(r"\bkey '[^']*'")
_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?")


@dataclass(frozen=True)
class StepFigures:
    """Messages one sending step recorded."""

    step: str  # step path, e.g. `1`
    action: str  # send_email / send_sms
    template: str
    messages: int
    deferred: int  # recorded with a later `not_before` (quiet hours)


@dataclass(frozen=True)
class Sample:
    """One rendered message, as a reader of the report sees it."""

    at: str
    contact_id: str
    step: str
    channel: str
    to: str
    subject: str | None
    lines: list[str]  # the first lines of its text part


@dataclass(frozen=True)
class WorkflowFigures:
    """What one workflow did."""

    id: str
    name: str | None
    runs_started: int
    outcomes: dict[str, int]  # exited_goal, exited_step, finished, restarted, error...
    waiting: int  # still waiting at the end
    queued: int
    messages: int
    messages_after_last_event: int  # going (quiet hours included) after the file's last event
    steps: list[StepFigures]
    skips: dict[str, int]  # reason -> how many times
    errors: dict[str, int]
    samples: list[Sample]


@dataclass(frozen=True)
class Series:
    """Messages per bucket and the most runs waiting within each bucket, from `start`."""

    start: str
    bucket_minutes: int
    messages: list[int]
    waiting: list[int]


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a contact's timeline."""

    at: str
    kind: str  # event, a trace kind, or message
    workflow: str
    text: str


@dataclass(frozen=True)
class Totals:
    """What was read and replayed."""

    rows: int  # data lines of the file
    events: int
    refused: int
    skipped: int
    replayed: int
    history: int
    duplicates: int
    after_until: int
    timers: int
    messages: int
    first_event: str | None
    last_event: str | None
    end: str | None  # the virtual time the replay stopped at


@dataclass(frozen=True)
class SimulationReport:
    """Everything `simulate` reports; `to_json` is deterministic."""

    source: str
    totals: Totals
    refused: list[RowProblem]  # the first FIRST_PROBLEMS refused rows, by line
    skipped: dict[str, int]  # skipped rows by reason
    workflows: list[WorkflowFigures]
    series: Series
    contact: str | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)

    def to_json(self) -> str:
        """The report as JSON text, the same bytes for the same input."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def iso(value: datetime | None) -> str | None:
    """A time as ISO 8601 text in UTC."""
    return value.astimezone(UTC).isoformat() if value is not None else None


@lru_cache(maxsize=4096)  # a replay gives the same few messages again and again
def reason_of(kind: TraceKind, workflow_id: str, message: str) -> str:
    """A trace message as a reason that groups: no ids or times, no repeated workflow id."""
    if kind is TraceKind.trigger_skipped:
        _, found, rest = message.partition(f" did not start {workflow_id}: ")
        message = f"not started: {rest}" if found else message
    message = _RUN_ID.sub("…", message)
    message = _EVENT_ID.sub("…", message)
    message = _KEY.sub("key …", message)
    return _TIME.sub("…", message)


@dataclass
class _Flow:
    """Running figures of one workflow."""

    started: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    steps: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    message_times: list[datetime] = field(default_factory=list)
    skips: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[Message] = field(default_factory=list)


class ReportBuilder:
    """Accumulates a report from the decisions of a replay (see the module docstring)."""

    def __init__(self, workflows: Sequence[CompiledWorkflow], *, samples: int = SAMPLES) -> None:
        self._workflows = {w.id: w for w in workflows}
        self._samples = samples
        self._flows: dict[str, _Flow] = defaultdict(_Flow)
        self._active: dict[str, tuple[str, RunStatus]] = {}  # run id -> (workflow, status)
        self._ended: set[str] = set()  # runs whose end is counted
        self._messages_per_slot: Counter[int] = Counter()
        self._peak_waiting: dict[int, int] = {}

    def observe(self, now: datetime, decision: Decision) -> None:
        """Take in one decision written at `now` (the processor's observer)."""
        for run in decision.runs:
            if run.is_active:
                self._active[run.id] = (run.workflow_id, run.status)
            elif run.id not in self._ended and run.outcome is not None:
                self._active.pop(run.id, None)
                self._ended.add(run.id)
                self._flows[run.workflow_id].outcomes[run.outcome.value] += 1
        for entry in decision.trace:
            flow = self._flows[entry.workflow_id]
            if entry.kind is TraceKind.run_started:
                flow.started += 1
            elif entry.kind in (TraceKind.skip, TraceKind.trigger_skipped):
                flow.skips[reason_of(entry.kind, entry.workflow_id, entry.message)] += 1
            elif entry.kind is TraceKind.error:
                flow.errors[reason_of(entry.kind, entry.workflow_id, entry.message)] += 1
        for message in decision.messages:
            flow = self._flows[message.workflow_id]
            flow.steps[message.step] += 1
            if message.not_before > message.created_at:
                flow.deferred[message.step] += 1
            # Counted when it goes (quiet hours move that), as the daemon would send it.
            goes_at = _goes_at(message)
            flow.message_times.append(goes_at)
            if len(flow.samples) < self._samples:
                flow.samples.append(message)
            self._messages_per_slot[_slot(goes_at)] += 1
        slot = _slot(now)
        self._peak_waiting[slot] = max(self._peak_waiting.get(slot, 0), len(self._active))

    def build(
        self,
        *,
        source: str,
        totals: Totals,
        refused: Sequence[RowProblem],
        skipped: Mapping[str, int],
    ) -> SimulationReport:
        """The finished report."""
        last = datetime.fromisoformat(totals.last_event) if totals.last_event else None
        ids = sorted(set(self._workflows) | {k for k in self._flows if k != "*"})
        return SimulationReport(
            source=source,
            totals=totals,
            refused=sorted(refused)[:FIRST_PROBLEMS],
            skipped=dict(sorted(skipped.items())),
            workflows=[self._figures(workflow_id, last) for workflow_id in ids],
            series=self._series(totals),
        )

    def _figures(self, workflow_id: str, last: datetime | None) -> WorkflowFigures:
        flow = self._flows.get(workflow_id, _Flow())
        workflow = self._workflows.get(workflow_id)
        statuses = Counter(s for w, s in self._active.values() if w == workflow_id)
        return WorkflowFigures(
            id=workflow_id,
            name=workflow.definition.name if workflow is not None else None,
            runs_started=flow.started,
            outcomes={o.value: flow.outcomes[o.value] for o in Outcome if flow.outcomes[o.value]},
            waiting=statuses[RunStatus.waiting],
            queued=statuses[RunStatus.queued],
            messages=sum(flow.steps.values()),
            messages_after_last_event=sum(1 for t in flow.message_times if last and t > last),
            steps=[
                StepFigures(path, *_action(workflow, path), flow.steps[path], flow.deferred[path])
                for path in sorted(flow.steps, key=_path_order)
            ],
            skips=_ranked(flow.skips),
            errors=_ranked(flow.errors),
            samples=[_sample(m) for m in flow.samples],
        )

    def _series(self, totals: Totals) -> Series:
        first = datetime.fromisoformat(totals.first_event) if totals.first_event else None
        end = datetime.fromisoformat(totals.end) if totals.end else first
        if first is None or end is None:
            return Series(start="", bucket_minutes=60, messages=[], waiting=[])
        bucket = timedelta(hours=1) if end - first >= timedelta(hours=12) else timedelta(minutes=10)
        per = bucket // SLOT
        origin = _slot(first) // per * per
        count = (_slot(end) - origin) // per + 1
        messages, waiting = [0] * count, [0] * count
        for slot, n in self._messages_per_slot.items():
            messages[min(max((slot - origin) // per, 0), count - 1)] += n
        level = 0
        peaks = dict(self._peak_waiting)
        for index in range(count):
            top = level
            for slot in range(origin + index * per, origin + (index + 1) * per):
                if slot in peaks:
                    top = max(top, peaks[slot])
                    level = peaks[slot]
            waiting[index] = top
        start = datetime.fromtimestamp(origin * SLOT.total_seconds(), UTC)
        return Series(iso(start) or "", int(bucket.total_seconds() // 60), messages, waiting)


def _slot(when: datetime) -> int:
    return int(when.timestamp() // _SLOT_S)


def _ranked(counts: Counter[str]) -> dict[str, int]:
    """Most frequent first, then alphabetical: a stable order."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _path_order(path: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (-1, p) for p in path.split("/")]


def _action(workflow: CompiledWorkflow | None, path: str) -> tuple[str, str]:
    """The action and template of the step at `path` ("?" when it cannot be found)."""
    if workflow is None:
        return "?", "?"
    try:
        step = step_at(workflow.definition.steps, path)
    except PositionError:
        return "?", "?"
    if isinstance(step, SendEmailStep):
        return "send_email", step.send_email.template
    if isinstance(step, SendSmsStep):
        return "send_sms", step.send_sms.template or "(inline text)"
    return "?", "?"


def _goes_at(message: Message) -> datetime:
    """When a recorded message would go: when recorded, or later if deferred (quiet hours)."""
    return max(message.created_at, message.not_before)


def _sample(message: Message) -> Sample:
    lines = [line.strip() for line in message.text.splitlines() if line.strip()]
    return Sample(
        at=iso(_goes_at(message)) or "",
        contact_id=message.contact_id,
        step=message.step,
        channel=message.channel.value,
        to=message.to,
        subject=message.subject,
        lines=lines[:SAMPLE_LINES],
    )


def _find(uow: UnitOfWork, reference: str) -> Contact | None:
    """The contact holding `reference` as an identifier, else having it as its id."""
    for kind in IdentifierKind:
        value = normalise_identifier(kind, reference)
        if kind is not IdentifierKind.contact_id and value:
            found = uow.find_contacts({kind: value})
            if found:
                return found[0]
    return uow.get_contact(reference) if reference else None


def contact_timeline(uow: UnitOfWork, reference: str) -> tuple[str, list[TimelineEntry]] | None:
    """A contact's events, trace and messages in time order (None: no such contact).

    `reference` is an identifier the contact holds (the user id of a CSV row, an email...) or
    else its contact id: identifiers first, because a replay's contact ids are small counters
    that the data's own ids could be mistaken for. At the same instant an event comes first,
    then the decisions it caused, then messages.
    """
    contact = _find(uow, reference.strip())
    if contact is None:
        return None
    entries: list[tuple[datetime, int, TimelineEntry]] = []
    for event in uow.contact_events(contact.id):
        text = f"{event.name} {json.dumps(event.properties, sort_keys=True)[:160]}"
        entries.append(
            (event.occurred_at, 0, TimelineEntry(iso(event.occurred_at) or "", "event", "", text))
        )
    for entry in uow.trace_for_contact(contact.id):
        step = f"[{entry.step}] " if entry.step else ""
        line = TimelineEntry(
            iso(entry.at) or "", entry.kind.value, entry.workflow_id, step + entry.message
        )
        entries.append((entry.at, 1, line))
    for message in uow.messages_for_contact(contact.id):
        text = f"{message.channel.value} to {message.to}: {message.subject or message.text[:80]}"
        if message.not_before > message.created_at:
            text += f" (not before {iso(message.not_before)})"
        line = TimelineEntry(iso(message.created_at) or "", "message", message.workflow_id, text)
        entries.append((message.created_at, 2, line))
    entries.sort(key=lambda item: (item[0], item[1]))  # stable: store order within a kind
    return contact.id, [entry for _, _, entry in entries]
