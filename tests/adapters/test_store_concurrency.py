"""The store under concurrency: several workers, each event and message handled exactly once.

PostgreSQL lets several processes share the work (`FOR UPDATE SKIP LOCKED`); SQLite has one
writer at a time (`BEGIN IMMEDIATE`); the memory store serialises its transactions. Whatever
the store, what the workers see is the same: no row handled twice, none left behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from support.messages import T0, make_message
from support.records import make_event, make_run
from tidings.adapters.sql.store import SqlStore
from tidings.errors import StoreError
from tidings.ports import Store, UnitOfWork

WORKERS = 4


def run_workers(store: Store, work: Callable[[UnitOfWork], list[str]]) -> list[str]:
    """Run `work` in transactions on WORKERS threads until each got nothing, then once more
    alone until it gets nothing; all it returned.

    An empty claim beside other workers' transactions proves nothing on PostgreSQL: rows they
    hold are skipped, and a contact's events wait behind an earlier one held elsewhere. So
    the workers may all stop with rows left that only others' locks had hidden; the last
    drain, alone, claims what is left. A row handled twice, or marked without being handed
    out, still shows in what the workers returned.
    """
    done: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            while True:
                with store.transaction() as uow:
                    handled = work(uow)
                if not handled:
                    return
                with lock:
                    done.extend(handled)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    while True:
        with store.transaction() as uow:
            handled = work(uow)
        if not handled:
            return done
        done.extend(handled)


def test_concurrent_workers_process_each_event_exactly_once(store: Store) -> None:
    with store.transaction() as uow:
        for n in range(120):
            uow.add_event(make_event(n, contact_id=f"contact-{n % 7}"))

    def process(uow: UnitOfWork) -> list[str]:
        claimed = uow.claim_events(5)
        uow.mark_events_processed([e.seq for e in claimed if e.seq is not None])
        return [e.id for e in claimed]

    handled = run_workers(store, process)
    assert sorted(handled) == sorted(f"event-{n}" for n in range(120))
    with store.transaction() as uow:
        assert uow.claim_events(10) == []


def test_concurrent_senders_claim_each_message_exactly_once(store: Store) -> None:
    with store.transaction() as uow:
        uow.add_messages([make_message(n) for n in range(90)])

    def send(uow: UnitOfWork) -> list[str]:
        claimed = uow.claim_messages(T0, limit=4, lease=timedelta(hours=1))
        return [m.key for m in claimed]

    handled = run_workers(store, send)
    assert sorted(handled) == sorted(f"run-{n}:0" for n in range(90))


# -- PostgreSQL: open transactions skip each other's rows ---------------------------------


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[SqlStore]:
    """A SqlStore on an empty, migrated PostgreSQL database."""
    store = SqlStore(postgres_url)
    yield store
    store.close()


@pytest.mark.postgres
def test_two_open_transactions_claim_disjoint_rows(postgres_store: SqlStore) -> None:
    with postgres_store.transaction() as uow:
        for n in range(6):
            uow.add_event(make_event(n))
        uow.save_runs([make_run(n) for n in range(6)])
        uow.add_messages([make_message(n) for n in range(6)])
    later = T0 + timedelta(days=1)
    lease = timedelta(minutes=5)
    # Two connections, both transactions open at once: SKIP LOCKED never waits.
    with postgres_store.transaction() as first, postgres_store.transaction() as second:
        events = [[e.id for e in uow.claim_events(4)] for uow in (first, second)]
        runs = [[r.id for r in uow.claim_due_runs(later, 4)] for uow in (first, second)]
        messages = [[m.key for m in uow.claim_messages(T0, 4, lease)] for uow in (first, second)]
    assert events == [[f"event-{n}" for n in range(4)], ["event-4", "event-5"]]
    assert runs == [[f"run-{n}" for n in range(4)], ["run-4", "run-5"]]
    assert messages == [[f"run-{n}:0" for n in range(4)], ["run-4:0", "run-5:0"]]


@pytest.mark.postgres
def test_a_contacts_later_events_wait_while_another_worker_holds_an_earlier_one(
    postgres_store: SqlStore,
) -> None:
    with postgres_store.transaction() as uow:
        for n, contact in enumerate(["ann", "bob", "ann", "bob", "cy"], start=1):
            uow.add_event(make_event(n, contact_id=contact))
    with postgres_store.transaction() as first:
        [held] = first.claim_events(1)
        assert (held.id, held.contact_id) == ("event-1", "ann")
        with postgres_store.transaction() as second:
            # ann's event-3 must not overtake event-1, still being processed by `first`.
            assert [e.id for e in second.claim_events(10)] == ["event-2", "event-4", "event-5"]
        first.mark_events_processed([held.seq or 0])
    with postgres_store.transaction() as uow:
        assert [e.id for e in uow.claim_events(10)] == ["event-2", "event-3", "event-4", "event-5"]


def wait_until_a_session_waits_on_a_lock(url: str) -> None:
    """Return once some session of this database is blocked on a lock (the second writer)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + 30
    try:
        with engine.connect() as conn:
            while time.monotonic() < deadline:
                waiting = conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).scalar_one()
                conn.rollback()  # a fresh snapshot of pg_stat_activity on the next poll
                if waiting:
                    return
    finally:
        engine.dispose()
    pytest.fail("the second writer never blocked on the first one's uncommitted insert")


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("insert", "expected"),
    [
        (lambda uow: uow.add_event(make_event(1), dedup_key="api:1")[1], [True, False]),
        (lambda uow: uow.add_messages([make_message(1)]), [1, 0]),
    ],
    ids=["event-dedup-key", "outbox-key"],
)
def test_a_concurrent_duplicate_waits_for_the_first_and_then_does_nothing(
    postgres_store: SqlStore,
    postgres_url: str,
    insert: Callable[[UnitOfWork], object],
    expected: list[object],
) -> None:
    results: list[object] = []
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with postgres_store.transaction() as uow:
                results.append(insert(uow))
        except BaseException as exc:
            errors.append(exc)

    with postgres_store.transaction() as first:
        results.append(insert(first))
        thread = threading.Thread(target=second_writer)
        thread.start()
        wait_until_a_session_waits_on_a_lock(postgres_url)
    thread.join()
    assert errors == []
    assert results == expected
    with postgres_store.transaction() as uow:
        assert uow.list_events()[1] + len(uow.messages_for_contact("contact-1")) == 1


# -- SQLite: one writer, from BEGIN ---------------------------------------------------------


def test_sqlite_takes_the_write_lock_when_a_transaction_begins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tidings.db'}"
    store = SqlStore(url)
    store.migrate()
    impatient = SqlStore(url, busy_timeout=timedelta(milliseconds=50))
    try:
        with store.transaction() as uow:
            uow.claim_events(10)  # only a read so far, yet no one else may write now
            with pytest.raises(StoreError, match="database is locked"), impatient.transaction():
                pass
        with impatient.transaction() as uow:
            assert uow.claim_events(10) == []
    finally:
        impatient.close()
        store.close()


@pytest.mark.postgres
def test_a_locked_contact_holds_other_workers_until_its_transaction_ends(
    postgres_store: SqlStore, postgres_url: str
) -> None:
    order: list[str] = []
    with postgres_store.transaction() as first:
        first.lock_contact("ann")

        def second_worker() -> None:
            with postgres_store.transaction() as second:
                second.lock_contact("bob")  # another contact: never waits
                order.append("bob locked")
                second.lock_contact("ann")
                order.append("ann locked by second")

        thread = threading.Thread(target=second_worker)
        thread.start()
        wait_until_a_session_waits_on_a_lock(postgres_url)
        assert order == ["bob locked"]
        order.append("first commits")
    thread.join(timeout=30)
    assert order == ["bob locked", "first commits", "ann locked by second"]


@pytest.mark.postgres
def test_contacts_locked_together_hold_a_worker_locking_one_of_them(
    postgres_store: SqlStore, postgres_url: str
) -> None:
    order: list[str] = []
    with postgres_store.transaction() as first:
        first.lock_contacts(["cy", "ann", "bob", "ann"])

        def second_worker() -> None:
            with postgres_store.transaction() as second:
                second.lock_contacts(["dee"])  # none of the first's: never waits
                order.append("dee locked")
                second.lock_contact("bob")
                order.append("bob locked by second")

        thread = threading.Thread(target=second_worker)
        thread.start()
        wait_until_a_session_waits_on_a_lock(postgres_url)
        assert order == ["dee locked"]
        order.append("first commits")
    thread.join(timeout=30)
    assert order == ["dee locked", "first commits", "bob locked by second"]


@pytest.mark.postgres
def test_workers_locking_overlapping_contacts_in_any_order_never_deadlock(
    postgres_store: SqlStore,
) -> None:
    contacts = [f"contact-{n}" for n in range(40)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for round_ in range(20):
                given = contacts[n::2] + contacts[::-1] if (n + round_) % 2 else contacts
                with postgres_store.transaction() as uow:
                    uow.lock_contacts(given)
                    time.sleep(0.001)  # hold them while the others try
        except BaseException as exc:  # a deadlock is a StoreError: reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
