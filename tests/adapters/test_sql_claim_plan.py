"""The claims of due runs and of due messages read their batch in index order: a crowd due at
one instant is never read and sorted whole at every claim (the cost grew with the crowd's size
squared)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from support.messages import T0, make_message
from support.records import make_run
from tidings.adapters.sql.driver import driver_select
from tidings.adapters.sql.runs import _due_runs
from tidings.adapters.sql.store import SqlStore
from tidings.model.messages import Message


def test_the_claim_needs_no_sort_on_sqlite(migrated_sqlite_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "tidings.db"
    shutil.copyfile(migrated_sqlite_file, path)
    store = SqlStore(f"sqlite:///{path}")
    try:
        with store.transaction() as uow:
            # One instant for all, ids out of order: the order is the index's, not the insert's.
            crowd = [make_run(n, id=f"run-{n % 7}-{n}", due_at=T0) for n in range(30)]
            uow.save_runs(crowd)
            claimed = uow.claim_due_runs(T0 + timedelta(minutes=1), 10)
            sql, parameters = driver_select(
                uow._conn.dialect, _due_runs(postgres=False)
            ).parameters({"now": T0, "limit": 10})
    finally:
        store.close()
    assert [r.id for r in claimed] == sorted(r.id for r in crowd)[:10]
    with sqlite3.connect(path) as conn:
        plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
    assert plan == ["SEARCH runs USING INDEX ix_runs_waiting_due_at_id (due_at<?)"]


@pytest.mark.postgres
def test_the_claim_needs_no_sort_on_postgres(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    try:
        with store.transaction() as uow:
            crowd = [make_run(n, id=f"run-{n % 7}-{n}", due_at=T0) for n in range(30)]
            uow.save_runs(crowd)
            claimed = uow.claim_due_runs(T0 + timedelta(minutes=1), 10)
            conn = uow._conn
            compiled = _due_runs(postgres=True).compile(dialect=conn.dialect)
            # Without a table scan or a sort to choose from, a plan that needs either says so:
            # the test does not depend on the planner's costs for 30 rows.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
            parameters = {"now": T0 + timedelta(minutes=1), "limit": 10}
            plan = conn.exec_driver_sql(f"EXPLAIN {compiled}", parameters).scalars().all()
    finally:
        store.close()
    assert [r.id for r in claimed] == sorted(r.id for r in crowd)[:10]
    assert any("Index Scan using ix_runs_waiting_due_at_id" in line for line in plan), plan
    assert not any("Sort" in line for line in plan), plan


def _claim_selects(uow: object, claim: Callable[[], object]) -> list[tuple[str, Any]]:
    """The SELECT statements (text, parameters) that `claim` runs on the transaction's
    connection, captured as the driver receives them."""
    conn: sa.Connection = uow._conn  # type: ignore[attr-defined]
    seen: list[tuple[str, Any]] = []

    def record(_conn: object, _cursor: object, sql: str, parameters: Any, *_: object) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            seen.append((sql, parameters))

    sa.event.listen(conn, "before_cursor_execute", record)
    try:
        claim()
    finally:
        sa.event.remove(conn, "before_cursor_execute", record)
    return seen


def _backlog() -> list[Message]:
    """Thirty due messages, many at one instant, keys out of order."""
    return [
        make_message(n, key=f"run-{n % 7}-{n}:0", not_before=T0 - timedelta(seconds=n % 3))
        for n in range(30)
    ]


def _claim_order(messages: list[Message]) -> list[str]:
    return [m.key for m in sorted(messages, key=lambda m: (m.not_before, m.key))]


def test_the_message_claim_needs_no_sort_on_sqlite(
    migrated_sqlite_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "tidings.db"
    shutil.copyfile(migrated_sqlite_file, path)
    store = SqlStore(f"sqlite:///{path}")
    backlog = _backlog()
    try:
        with store.transaction() as uow:
            uow.add_messages(backlog)
        with store.transaction() as uow:
            claimed: list[Message] = []
            selects = _claim_selects(
                uow, lambda: claimed.extend(uow.claim_messages(T0, 10, timedelta(minutes=5)))
            )
    finally:
        store.close()
    assert [m.key for m in claimed] == _claim_order(backlog)[:10]
    with sqlite3.connect(path) as conn:
        plans = [
            [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)]
            for sql, parameters in selects
        ]
    # Pending messages in the index's order; the few `sending` ones found by their status.
    assert plans == [
        [
            "SEARCH messages USING COVERING INDEX ix_messages_status_due_at_key"
            " (status=? AND due_at<?)"
        ],
        ["SEARCH messages USING INDEX ix_messages_status_due_at_key (status=?)"],
    ]


@pytest.mark.postgres
def test_the_message_claim_needs_no_sort_on_postgres(postgres_url: str) -> None:
    store = SqlStore(postgres_url)
    backlog = _backlog()
    try:
        with store.transaction() as uow:
            uow.add_messages(backlog)
            conn = uow._conn
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            conn.exec_driver_sql("SET LOCAL enable_sort = off")
            claimed: list[Message] = []
            selects = _claim_selects(
                uow, lambda: claimed.extend(uow.claim_messages(T0, 10, timedelta(minutes=5)))
            )
            [pending_sql, pending_parameters] = selects[0]
            plan = (
                conn.exec_driver_sql(f"EXPLAIN {pending_sql}", pending_parameters).scalars().all()
            )
    finally:
        store.close()
    assert [m.key for m in claimed] == _claim_order(backlog)[:10]
    assert any("Index" in line and "ix_messages_status_due_at_key" in line for line in plan), plan
    assert not any("Sort" in line for line in plan), plan
