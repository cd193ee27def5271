"""Replaying event files in virtual time, and storing them as history.

Given a small JSONL log and workflows on disk, when the log is replayed, then timers fire at
their own due time before any later event, events are applied at their own date, and the
cached replay writes exactly what the uncached one writes.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tidings.adapters.clock import ManualClock
from tidings.adapters.memory import MemoryStore
from tidings.adapters.sql.store import SqlStore
from tidings.engine.core import Environment
from tidings.model.messages import Message
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Store
from tidings.service.event_files import read_jsonl
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry
from tidings.service.replay import EventFile, RowProblem, StoreTotals, Writer, read_events
from tidings.service.replay_cache import ReplayCache
from tidings.service.simulation_report import ReportBuilder
from tidings.service.validation import Limits

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)

TEMPLATES = {
    "cart.email.html": '---\nsubject: "Cart {{ event.properties.cart_id }}"\n---\n<p>Hi</p>\n',
    "back.email.html": '---\nsubject: "Welcome back"\n---\n<p>Again</p>\n',
    "seen.email.html": '---\nsubject: "Seen {{ run.id }}"\n---\n<p>Seen</p>\n',
}
WORKFLOWS = {
    "cart.yaml": """
        id: cart
        trigger: {event: cart_updated}
        key: "{{ event.properties.cart_id }}"
        mode: restart
        exit:
          - event: order_completed
            if: "event.properties.cart_id == run.key"
            reason: bought
        steps:
          - wait: 1h
          - send_email: {template: cart}
        """,
    "back.yaml": """
        id: back
        trigger:
          event: visited
          if: 'has_event("order_completed")'
        reentry: {cooldown: 1h}
        steps:
          - send_email: {template: back}
        """,
    # Several runs side by side and a cooldown: the order of runs and the newest run matter.
    "seen.yaml": """
        id: seen
        trigger: {event: visited}
        mode: parallel
        max: 2
        reentry: {cooldown: 20m}
        exit: {event: order_completed}
        steps:
          - wait: 90m
          - send_email: {template: seen}
          - wait: 10m
          - send_email: {template: seen}
        """,
}


def body(name: str, at: datetime, email: str = "ann@example.com", **props: Any) -> str:
    """One JSONL line in the /v3/events shape."""
    return json.dumps(
        {
            "event_name": name,
            "identifiers": {"email_id": email},
            "event_date": at.isoformat(),
            "event_properties": props,
        }
    )


def read(lines: list[str]) -> EventFile:
    return read_events(read_jsonl(lines), limits=Limits(), source="simulate")


@dataclass
class Replay:
    """The result of one replay: what was written, what the report builder saw, the store."""

    totals: StoreTotals
    builder: ReportBuilder
    store: Store

    def messages(self, email: str = "ann@example.com") -> list[Message]:
        with self.store.transaction() as uow:
            [contact] = uow.find_contacts({"email_id": email})  # type: ignore[dict-item]
            return uow.messages_for_contact(contact.id)

    def runs(self, email: str = "ann@example.com") -> list[Run]:
        with self.store.transaction() as uow:
            [contact] = uow.find_contacts({"email_id": email})  # type: ignore[dict-item]
            return uow.runs_for_contact(contact.id, active_only=False)

    def trace(self, email: str = "ann@example.com") -> list[TraceEntry]:
        with self.store.transaction() as uow:
            [contact] = uow.find_contacts({"email_id": email})  # type: ignore[dict-item]
            return uow.trace_for_contact(contact.id)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    templates, workflows = tmp_path / "templates", tmp_path / "workflows"
    templates.mkdir()
    workflows.mkdir()
    for name, text in TEMPLATES.items():
        (templates / name).write_text(text, encoding="utf-8")
    for name, text in WORKFLOWS.items():
        (workflows / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return workflows, templates


@pytest.fixture
def sqlite_stores(tmp_path: Path) -> Iterator[Callable[[], SqlStore]]:
    opened: list[SqlStore] = []

    def make() -> SqlStore:
        store = SqlStore(f"sqlite:///{tmp_path / f'replay-{len(opened)}.db'}")
        store.migrate()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def replay(
    folders: tuple[Path, Path], sqlite_stores: Callable[[], SqlStore]
) -> Callable[..., Replay]:
    def run(
        lines: list[str],
        *,
        store: Store | None = None,
        cache: ReplayCache | None = None,
        start: datetime | None = None,
        until: datetime | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Replay:
        store = store or sqlite_stores()
        registry, loaded = WorkflowRegistry.from_directory(*folders)
        assert loaded.problems == []
        registry.record_versions(store)
        env = Environment(templates=registry.catalog, mail_from="shop@example.com", sms_sender="S")
        builder = ReportBuilder(registry.current)
        clock = ManualClock(T0)
        processor = Processor(
            store, registry, env, clock, observer=builder.observe, virtual_time=True
        )
        ids = iter(range(1, 1_000_000))
        writer = Writer(
            store,
            clock,
            limits=Limits(),
            new_contact_id=lambda: str(next(ids)),
            cache=cache,
            chunk=2,
        )
        totals = writer.replay(
            read(lines).events(), processor, start=start, until=until, progress=progress
        )
        return Replay(totals, builder, store)

    return run


def test_a_timer_fires_at_its_due_time_before_a_later_event_with_no_lateness(
    replay: Callable[..., Replay],
) -> None:
    done = replay(
        [
            body("cart_updated", T0, cart_id="K1"),
            body("order_completed", T0 + timedelta(hours=1, seconds=1), cart_id="K1"),
        ]
    )

    [message] = done.messages()
    assert (message.subject, message.created_at) == ("Cart K1", T0 + timedelta(hours=1))
    [run] = done.runs()
    assert (run.outcome, run.finished_at) == (Outcome.finished, T0 + timedelta(hours=1))
    assert TraceKind.late not in [entry.kind for entry in done.trace()]


def test_an_event_at_the_very_due_time_comes_before_the_timer(
    replay: Callable[..., Replay],
) -> None:
    done = replay(
        [
            body("cart_updated", T0, cart_id="K1"),
            body("order_completed", T0 + timedelta(hours=1), cart_id="K1"),
        ]
    )

    assert done.messages() == []
    [run] = done.runs()
    assert (run.outcome, run.reason) == (Outcome.exited_goal, "bought")


def test_after_the_last_event_virtual_time_runs_on_until_nothing_waits(
    replay: Callable[..., Replay],
) -> None:
    done = replay([body("cart_updated", T0, cart_id="K1")])

    assert [m.created_at for m in done.messages()] == [T0 + timedelta(hours=1)]
    assert done.totals.end == T0 + timedelta(hours=1)
    assert (done.totals.replayed, done.totals.timers, done.totals.messages) == (1, 1, 1)


def test_until_stops_the_clock_and_leaves_later_events_out(
    replay: Callable[..., Replay],
) -> None:
    done = replay(
        [
            body("cart_updated", T0, cart_id="K1"),
            body("cart_updated", T0 + timedelta(hours=2), cart_id="K2"),
        ],
        until=T0 + timedelta(minutes=30),
    )

    assert done.messages() == []
    [run] = done.runs()
    assert (run.status, run.due_at) == (RunStatus.waiting, T0 + timedelta(hours=1))
    assert (done.totals.after_until, done.totals.end) == (1, T0 + timedelta(minutes=30))


def test_events_before_from_are_history_that_conditions_see_but_start_nothing(
    replay: Callable[..., Replay],
) -> None:
    start = T0 + timedelta(days=1)
    done = replay(
        [
            body("cart_updated", T0, cart_id="K0"),
            body("order_completed", T0 + timedelta(minutes=5), cart_id="K0"),
            body("visited", start + timedelta(minutes=1)),
        ],
        start=start,
    )

    assert [m.subject for m in done.messages() if m.workflow_id == "back"] == ["Welcome back"]
    assert [r.workflow_id for r in done.runs() if r.workflow_id != "seen"] == ["back"]
    assert (done.totals.history, done.totals.replayed) == (2, 1)


def test_a_row_refused_by_ingestion_is_reported_with_its_line(
    replay: Callable[..., Replay],
) -> None:
    unknown = json.dumps(
        {
            "event_name": "cart_updated",
            "identifiers": {"contact_id": "999"},
            "event_date": "2030-03-04T10:00:00Z",
        }
    )
    done = replay([body("cart_updated", T0, cart_id="K1"), unknown])

    assert done.totals.refused == [RowProblem(2, "identifiers.contact_id: no contact with id 999")]
    assert done.totals.replayed == 1


def test_replaying_the_same_file_into_the_same_store_stores_nothing_twice(
    replay: Callable[..., Replay], sqlite_stores: Callable[[], SqlStore]
) -> None:
    store = sqlite_stores()
    lines = [body("cart_updated", T0, cart_id="K1")]
    replay(lines, store=store)

    again = replay(lines, store=store)

    assert (again.totals.duplicates, again.totals.replayed) == (1, 0)
    assert len(again.messages()) == 1


def _everything(done: Replay, emails: list[str]) -> list[Any]:
    """What a user can see of the store for these contacts, ids and times included."""
    seen: list[Any] = []
    for email in emails:
        seen.append([r.model_dump() for r in done.runs(email)])
        seen.append([(t.at, t.kind, t.step, t.message) for t in done.trace(email)])
        seen.append([m.model_dump() for m in done.messages(email)])
    return seen


@pytest.mark.parametrize(
    "cache",
    [
        pytest.param(lambda: ReplayCache(fresh=True), id="fresh"),
        pytest.param(ReplayCache, id="existing-store"),
        pytest.param(lambda: ReplayCache(fresh=True, max_contacts=1), id="evicting"),
    ],
)
def test_the_cached_replay_writes_exactly_what_the_uncached_one_writes(
    replay: Callable[..., Replay], cache: Callable[[], ReplayCache]
) -> None:
    emails = ["ann@example.com", "bob@example.com", "cy@example.com"]
    lines = []
    for n in range(60):
        email = emails[n % 3]
        at = T0 + timedelta(minutes=4 * n)
        lines.append(body("cart_updated", at, email, cart_id=f"K{n % 4}"))
        if n % 11 == 0:
            lines.append(
                body("order_completed", at + timedelta(minutes=40), email, cart_id=f"K{n % 4}")
            )
        lines.append(body("visited", at + timedelta(minutes=3), email))

    plain = replay(lines)
    cached = replay(lines, cache=cache())

    assert _everything(cached, emails) == _everything(plain, emails)
    assert cached.totals == plain.totals
    assert len([m for e in emails for m in plain.messages(e)]) > 3  # the test exercises sends


def test_the_replay_runs_the_same_on_the_memory_store(replay: Callable[..., Replay]) -> None:
    lines = [
        body("cart_updated", T0, cart_id="K1"),
        body("cart_updated", T0 + timedelta(minutes=10), cart_id="K2"),
        body("order_completed", T0 + timedelta(minutes=20), cart_id="K2"),
    ]

    on_sql = replay(lines)
    in_memory = replay(lines, store=MemoryStore())

    assert _everything(in_memory, ["ann@example.com"]) == _everything(on_sql, ["ann@example.com"])


def test_history_is_stored_processed_and_starts_nothing_when_the_log_is_processed(
    folders: tuple[Path, Path], sqlite_stores: Callable[[], SqlStore]
) -> None:
    store = sqlite_stores()
    clock = ManualClock(T0 + timedelta(days=2))
    writer = Writer(store, clock, limits=Limits(), key_id="import")
    totals = writer.store_history(read([body("cart_updated", T0, cart_id="K1")]).events())

    registry, _ = WorkflowRegistry.from_directory(*folders)
    env = Environment(templates=registry.catalog, mail_from="shop@example.com", sms_sender="S")
    stats = Processor(store, registry, env, clock).run_until_idle()

    assert (totals.stored, totals.history, stats.events) == (1, 1, 0)
    with store.transaction() as uow:
        [event] = uow.list_events()[0]
    assert (event.name, event.occurred_at, event.received_at) == ("cart_updated", T0, T0)


def test_progress_is_told_of_every_event_a_few_at_a_time(
    replay: Callable[..., Replay], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tidings.service.replay.PROGRESS", 1)
    told: list[int] = []
    lines = [body("visited", T0 + timedelta(minutes=n)) for n in range(7)]

    replay(lines, progress=told.append)

    assert told == [1] * 7  # every event, though each transaction here holds two


def test_an_event_read_from_a_file_has_its_rows_stable_id() -> None:
    line = json.dumps(
        {"event_name": "visited", "identifiers": {"ext_id": "7"}, "event_date": T0.isoformat()}
    )
    ids = []
    for _ in range(2):
        rows = list(read_jsonl([line]))
        [(_, event)] = read_events(rows, limits=Limits(), source="simulate").events()
        ids.append(event.id)
    assert ids[0] == ids[1] == rows[0].event_id
    assert ids[0].startswith("L1-")
