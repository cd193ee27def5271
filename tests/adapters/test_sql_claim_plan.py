"""The claim of due runs reads its batch in index order: a crowd of runs due at one instant is
never read and sorted whole at every claim (the cost grew with the crowd's size squared)."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from support.messages import T0
from support.records import make_run
from tidings.adapters.sql.driver import driver_select
from tidings.adapters.sql.runs import _due_runs
from tidings.adapters.sql.store import SqlStore


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
