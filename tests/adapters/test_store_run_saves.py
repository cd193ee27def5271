"""Runs saved after a claim, in the claim's transaction: on every store, each run reads back as
it was saved last (on SQLite a claimed run saved again is an UPDATE of the columns it changed,
the same rows as an upsert of all of them)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

from support.messages import T0
from support.records import make_run
from tidings.adapters.sql.store import SqlStore
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.ports import Store

DUE = T0 + timedelta(days=1)


def seed(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_runs([make_run(n, vars={"a": 1, "b": {"c": 2}}) for n in (1, 2, 3, 4)])


def finished(run: Run) -> Run:
    return run.model_copy(
        update={
            "status": RunStatus.finished,
            "outcome": Outcome.finished,
            "reason": "reached the end of the workflow",
            "due_at": None,
            "finished_at": DUE,
            "updated_at": DUE,
            "seq": run.seq + 1,
        }
    )


def test_claimed_runs_saved_again_read_back_as_saved_last(store: Store) -> None:
    seed(store)
    with store.transaction() as uow:
        one, two, three, four = uow.claim_due_runs(DUE, 10)
        moved = two.model_copy(update={"due_at": DUE + timedelta(hours=1), "position": "3"})
        # Equal to what is stored, key for key, but built anew (and in another order).
        rebuilt = three.model_copy(
            update={"event": dict(reversed(three.event.items())), "vars": {"b": {"c": 2}, "a": 1}}
        )
        new = make_run(5, contact_id="contact-2")
        uow.save_runs([moved, finished(one), four, new, rebuilt])
        uow.save_runs([finished(moved)])  # saved twice in one transaction: the last wins
        expected = {run.id: run for run in (finished(one), finished(moved), rebuilt, four, new)}
    with store.transaction() as uow:
        found = {run_id: uow.get_run(run_id) for run_id in expected}
        waiting = uow.claim_due_runs(DUE + timedelta(days=30), 10)

    assert found == expected
    assert [run.id for run in waiting] == ["run-3", "run-4", "run-5"]


def test_a_claimed_run_saved_with_equal_json_is_written_as_an_upsert_writes_it(
    migrated_sqlite_file: Path, tmp_path: Path
) -> None:
    """Equal JSON objects may be other text (their keys' order): a new object is written."""
    path = tmp_path / "tidings.db"
    shutil.copyfile(migrated_sqlite_file, path)
    store = SqlStore(f"sqlite:///{path}")
    try:
        seed(store)
        with store.transaction() as uow:
            [one, two, *_] = uow.claim_due_runs(DUE, 10)
            reordered = dict(reversed(one.event.items()))
            uow.save_runs([one.model_copy(update={"event": reordered}), two])
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        texts = dict(conn.execute("SELECT id, event FROM runs WHERE id IN ('run-1', 'run-2')"))

    assert list(json.loads(texts["run-1"])) == list(reordered)
    assert texts["run-2"] == json.dumps(two.event, separators=(",", ":"))
