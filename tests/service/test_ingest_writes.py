"""Ingest transactions that hold their new events and write them together give the answers,
rows, contacts and traces that writing each event through `add_event` gives."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tidings.adapters.clock import ManualClock
from tidings.adapters.memory import MemoryStore
from tidings.adapters.metrics import MeteredStore, Metrics
from tidings.adapters.sql.store import SqlStore
from tidings.model.events import Event
from tidings.ports import NumberedEvent, Store, UnitOfWork
from tidings.service import shapes
from tidings.service.ingest import IngestService, Outcome, Submission
from tidings.service.validation import parse_json

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
_NUMBERING = ("next_event_seq", "add_numbered_events", "held_dedup_keys")


class _Through:
    """A unit of work without the numbering ports: every event is written through."""

    def __init__(self, inner: UnitOfWork) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in _NUMBERING:
            raise AttributeError(name)
        return getattr(self._inner, name)


class ThroughStore:
    """A store whose units of work write every event through `add_event`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        with self.store.transaction() as uow:
            yield _Through(uow)  # type: ignore[misc]


class Counting:
    """A store counting `add_event` and `add_numbered_events` calls."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.one_by_one = 0
        self.together: list[int] = []

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        with self.store.transaction() as uow:
            add_event = uow.add_event
            add_many = getattr(uow, "add_numbered_events", None)
            within = False

            def one(event: Event, **kwargs: Any) -> tuple[Event, bool]:
                self.one_by_one += not within  # the memory store's bulk write calls it
                return add_event(event, **kwargs)

            uow.add_event = one  # type: ignore[method-assign]
            if add_many is not None:

                def many(events: Sequence[NumberedEvent]) -> None:
                    nonlocal within
                    self.together.append(len(events))
                    within = True
                    add_many(events)
                    within = False

                uow.add_numbered_events = many  # type: ignore[attr-defined]
            yield uow


@pytest.fixture(params=["memory", "sqlite"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite_file: Path
) -> Iterator[Callable[[], Store]]:
    """Fresh empty stores of one kind that number events themselves."""
    made: list[SqlStore] = []
    names = itertools.count()

    def make() -> Store:
        if request.param == "memory":
            return MemoryStore()
        path = tmp_path / f"tidings-{next(names)}.db"
        shutil.copyfile(migrated_sqlite_file, path)
        made.append(SqlStore(f"sqlite:///{path}"))
        return made[-1]

    yield make
    for store in made:
        store.close()


def _service(store: Store, clock: ManualClock) -> IngestService:
    ids = (str(n) for n in itertools.count(100))
    return IngestService(store, clock, new_contact_id=lambda: next(ids))


def _events(service: IngestService, body: dict[str, Any]) -> tuple[bytes, list[Event]]:
    raw = json.dumps(body).encode()
    now = service.clock.now()
    if "events" in body:
        return raw, shapes.brevo_batch(parse_json(raw), now=now, limits=service.limits)
    return raw, [shapes.brevo_event(parse_json(raw), now=now, limits=service.limits)]


ONE = {"event_name": "viewed", "identifiers": {"email_id": "a@x.org"}}
DATED = {
    "event_name": "paid",
    "identifiers": {"email_id": "a@x.org"},
    "event_date": "2024-05-01T10:30:00+02:00",  # stored in UTC
}
BATCH = {
    "events": [
        {
            "event_name": "viewed",
            "identifiers": {"email_id": f"u{n}@x.org"},
            "event_properties": {"n": n},
        }
        for n in range(5)
    ]
    + [
        # the same contact again, then one whose ext_id another contact holds (a conflict)
        {
            "event_name": "carted",
            "identifiers": {"email_id": "u1@x.org"},
            "contact_properties": {"FIRSTNAME": "Ann"},
        },
        {"event_name": "carted", "identifiers": {"email_id": "u9@x.org", "ext_id": "e-1"}},
        {"event_name": "carted", "identifiers": {"email_id": "u8@x.org", "ext_id": "e-1"}},
    ]
}
# Groups of requests, each written in one transaction: (body, options) per request.
GROUPS: list[list[tuple[dict[str, Any], dict[str, Any]]]] = [
    [(ONE, {}), (ONE, {}), (BATCH, {"batch": True})],  # a repeat in the same transaction
    [(ONE, {}), (DATED, {"idempotency_key": "k1"}), (DATED, {})],  # the stored copy, held
    [(BATCH, {"batch": True, "idempotency_key": "b1"}), (ONE, {"history": True})],
    [(BATCH, {"batch": True, "idempotency_key": "b1"})],  # every key held in the store
    [(BATCH | {"events": BATCH["events"][:3]}, {"batch": True, "idempotency_key": "b2"})],
    [
        # keys b2:0..2 held, b2:3.. new; and a tracker id repeated within the group
        (BATCH, {"batch": True, "idempotency_key": "b2"}),
        (ONE | {"event_name": "tracked"}, {"tracker_ids": ["t-1"]}),
        (ONE | {"event_name": "tracked"}, {"tracker_ids": ["t-1"]}),
    ],
    [(DATED, {}), (DATED | {"identifiers": {"email_id": "new@x.org"}}, {"history": True})],
]


def _replay(store: Store) -> tuple[list[list[Outcome | Exception]], IngestService]:
    clock = ManualClock(T0)
    service = _service(store, clock)
    answers = []
    for n, group in enumerate(GROUPS):
        clock.set(T0 + timedelta(seconds=10 * n))
        submissions: list[Submission] = []
        for body, options in group:
            raw, events = _events(service, body)
            submissions.append(service.submission(events, key_id="k", body=raw, **options))
        answers.append(service.write(submissions))
    return answers, service


def _state(store: Store) -> dict[str, Any]:
    with store.transaction() as uow:
        events, _ = uow.list_events(limit=1000)
        contact_ids = sorted({e.contact_id or "" for e in events})
        return {
            "events": sorted((e.model_dump(mode="json") for e in events), key=lambda e: e["seq"]),
            "contacts": [uow.get_contact(cid) for cid in contact_ids],
            "traces": [uow.trace_for_contact(cid) for cid in contact_ids],
            "unprocessed": [e.seq for e in uow.claim_events(1000)],
        }


def _answers(answers: list[list[Outcome | Exception]]) -> list[list[Any]]:
    """Outcomes with their events as JSON (times compare with their offsets), exceptions as
    their type and message."""
    return [
        [
            (type(a), str(a))
            if isinstance(a, Exception)
            else (a, [e.model_dump(mode="json") for e in a.events])
            for a in group
        ]
        for group in answers
    ]


def test_held_events_give_what_writing_each_through_gives(
    make_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Event ids are drawn afresh per event: the same sequence for both runs.
    draws = itertools.count()
    monkeypatch.setattr(shapes, "new_event_id", lambda: f"e{next(draws)}")
    held_store, through_store = make_store(), make_store()
    held, _ = _replay(held_store)
    draws = itertools.count()
    through, _ = _replay(ThroughStore(through_store))

    assert _answers(held) == _answers(through)
    assert _state(held_store) == _state(through_store)
    outcomes = [a for group in held for a in group if isinstance(a, Outcome)]
    assert sum(o.duplicates for o in outcomes) >= 12  # every kind of repeat above was met
    assert any(o.conflicts for o in outcomes)


def test_a_group_s_new_events_are_written_in_one_statement(
    make_store: Callable[[], Store],
) -> None:
    store = Counting(make_store())
    service = _service(store, ManualClock(T0))  # type: ignore[arg-type]
    submissions = []
    for body in (ONE, BATCH):
        raw, events = _events(service, body)
        submissions.append(service.submission(events, key_id="k", body=raw, batch="events" in body))
    [first, second] = service.write(submissions)
    assert isinstance(first, Outcome) and isinstance(second, Outcome)
    assert (store.one_by_one, store.together) == (0, [first.stored + second.stored])
    assert [e.seq for e in first.events + second.events] == list(range(1, 10))


def test_events_written_together_are_counted_as_ingested(make_store: Callable[[], Store]) -> None:
    metrics = Metrics()
    service = _service(MeteredStore(make_store(), metrics), ManualClock(T0))
    raw, events = _events(service, BATCH)
    outcome = service.ingest_now(service.submission(events, key_id="k", body=raw, batch=True))
    repeat = service.ingest_now(service.submission(events, key_id="k", body=raw, batch=True))
    assert (outcome.stored, repeat.duplicates) == (8, 8)
    assert metrics.value("tidings_events_ingested_total") == 8


def test_a_lone_event_is_written_through(make_store: Callable[[], Store]) -> None:
    store = Counting(make_store())
    service = _service(store, ManualClock(T0))  # type: ignore[arg-type]
    raw, events = _events(service, ONE)
    outcome = service.ingest_now(service.submission(events, key_id="k", body=raw))
    assert (outcome.stored, store.one_by_one, store.together) == (1, 1, [])
    assert outcome.events[0].seq == 1
