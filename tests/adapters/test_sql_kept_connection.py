"""A SQL store's kept connection gives the transactions its pooled ones give: committed when
the block ends, rolled back when it raises, errors as StoreError, visible to other connections
at once; on PostgreSQL and in-memory SQLite it is the store itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support.messages import make_message
from tidings.adapters.memory import MemoryStore
from tidings.adapters.metrics import MeteredStore, Metrics
from tidings.adapters.sql.store import SqlStore
from tidings.errors import StoreError
from tidings.model.messages import MessageStatus


class BoomError(Exception):
    """Raised inside a transaction to make it roll back."""


@pytest.fixture
def sqlite_store(migrated_sqlite_file: Path, tmp_path: Path) -> SqlStore:
    path = tmp_path / "tidings.db"
    shutil.copyfile(migrated_sqlite_file, path)
    return SqlStore(f"sqlite:///{path}")


def test_transactions_on_a_kept_connection_commit_and_roll_back_as_pooled_ones(
    sqlite_store: SqlStore,
) -> None:
    first, second = make_message(key="m-1"), make_message(key="m-2")
    try:
        with sqlite_store.kept_connection() as kept:
            assert kept is not sqlite_store
            with kept.transaction() as uow:
                uow.add_messages([first])
            with sqlite_store.transaction() as other:  # another connection sees it committed
                assert other.get_message("m-1") == first
            with pytest.raises(BoomError), kept.transaction() as uow:
                uow.add_messages([second])
                raise BoomError
            with pytest.raises(StoreError, match="no message with key"), kept.transaction() as uow:
                uow.save_message(second.model_copy(update={"status": MessageStatus.sent}))
            with kept.transaction() as uow:  # the connection carries on after both
                assert uow.get_message("m-2") is None
                assert uow.get_message("m-1") == first
    finally:
        sqlite_store.close()


def test_a_store_without_a_connection_to_keep_keeps_none() -> None:
    memory = SqlStore("sqlite://")
    try:
        with memory.kept_connection() as kept:
            assert kept is memory
    finally:
        memory.close()


@pytest.mark.postgres
def test_postgresql_keeps_no_connection(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    try:
        with store.kept_connection() as kept:
            assert kept is store
    finally:
        store.close()


def test_a_metered_store_keeps_its_inner_stores_connection_and_still_counts(
    sqlite_store: SqlStore,
) -> None:
    """The daemon hands the delivery worker a MeteredStore: its transactions take the SQL
    store's kept connection, and what they commit is counted as any other's."""
    metrics = Metrics()
    metered = MeteredStore(sqlite_store, metrics)
    message = make_message(key="m-1")
    try:
        with sqlite_store.kept_connection() as plain:
            kept_type = type(plain)
        with metered.kept_connection() as kept:
            assert isinstance(kept, MeteredStore) and type(kept.inner) is kept_type
            with kept.transaction() as uow:
                uow.add_messages([message])
            with kept.transaction() as uow:
                uow.save_message(message.model_copy(update={"status": MessageStatus.sent}))
            with pytest.raises(BoomError), kept.transaction() as uow:
                uow.save_message(message.model_copy(update={"status": MessageStatus.failed}))
                raise BoomError
        with sqlite_store.transaction() as uow:
            stored = uow.get_message("m-1")
        assert stored is not None and stored.status is MessageStatus.sent
        assert metrics.value("tidings_messages_sent_total", channel="email") == 1
        assert metrics.value("tidings_messages_failed_total", channel="email") == 0
    finally:
        sqlite_store.close()


def test_a_metered_store_over_one_that_keeps_no_connection_is_itself() -> None:
    metered = MeteredStore(MemoryStore(), Metrics())
    with metered.kept_connection() as kept:
        assert kept is metered
    in_memory = SqlStore("sqlite://")
    metered_sql = MeteredStore(in_memory, Metrics())
    try:
        with metered_sql.kept_connection() as kept:
            assert kept is metered_sql
    finally:
        in_memory.close()
