"""A worker's transactions run on a thread of their own, one at a time, and hand back what
they returned or raised."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from tidings.adapters.memory import MemoryStore
from tidings.adapters.sql.store import SqlStore
from tidings.ports import UnitOfWork
from tidings.service.transaction_thread import TransactionThread


def test_each_transaction_hands_back_its_result_or_its_error_from_one_thread() -> None:
    store = MemoryStore()
    transactions = TransactionThread(store, threading.Lock())
    threads: list[threading.Thread] = []

    def which_thread(uow: UnitOfWork) -> int:
        threads.append(threading.current_thread())
        return len(threads)

    def failing(uow: UnitOfWork) -> None:
        raise LookupError("no such thing")

    async def scenario() -> list[int]:
        results = [await transactions.run(which_thread) for _ in range(3)]
        with pytest.raises(LookupError, match="no such thing"):
            await transactions.run(failing)
        results.append(await transactions.run(which_thread))
        return results

    try:
        assert asyncio.run(scenario()) == [1, 2, 3, 4]
    finally:
        transactions.stop()
    assert len(set(threads)) == 1
    assert threads[0] is not threading.main_thread()
    threads[0].join(timeout=10)
    assert not threads[0].is_alive()


def test_a_new_event_loop_gets_its_results_too() -> None:
    transactions = TransactionThread(MemoryStore(), threading.Lock())
    try:
        for _ in range(2):
            assert asyncio.run(transactions.run(lambda uow: "done")) == "done"
    finally:
        transactions.stop()


def test_close_gives_the_kept_connection_back_before_it_returns(
    migrated_sqlite_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "tidings.db"
    shutil.copyfile(migrated_sqlite_file, path)
    store = SqlStore(f"sqlite:///{path}")
    transactions = TransactionThread(store, threading.Lock())
    try:
        assert asyncio.run(transactions.run(lambda uow: uow.get_message("none"))) is None
        # The thread keeps its connection for the next transaction...
        assert store._engine.pool.checkedout() == 1
        transactions.close()
        # ...and has given it back once close returns, without waiting for it to idle out.
        assert store._engine.pool.checkedout() == 0
    finally:
        store.close()
