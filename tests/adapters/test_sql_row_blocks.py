"""Many rows inserted at once: on SQLite an INSERT writes its rows ROWS_A_STATEMENT to a
statement, the rest one at a time; on every store the rows, their order and the count of new
ones are those of one statement per row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from support.messages import make_message
from support.records import make_contact, make_run, make_trace
from tidings.adapters.sql.driver import (
    ROWS_A_STATEMENT,
    DriverStatement,
    driver_statement,
    rows_at_once,
)
from tidings.adapters.sql.engine import create_engine
from tidings.adapters.sql.statements import insert_ignoring, plain_insert, upsert
from tidings.adapters.sql.tables import messages, runs, trace
from tidings.ports import Store

MANY = 2 * ROWS_A_STATEMENT + 7  # two whole blocks and some rows left over


@pytest.fixture
def dialect(tmp_path: Path) -> Iterator[sa.Dialect]:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    yield engine.dialect
    engine.dispose()


@pytest.mark.parametrize(
    ("table", "statement"),
    [
        (trace, plain_insert(trace)),
        (messages, insert_ignoring(False, messages, ("key",), None)),
        (runs, upsert(False, runs, ("id",))),
    ],
    ids=["insert", "insert_ignoring", "upsert"],
)
def test_an_insert_s_block_is_the_statement_with_many_rows(
    dialect: sa.Dialect, table: sa.Table, statement: sa.ClauseElement
) -> None:
    keys = tuple(c.name for c in table.c if c.name != "id" or table is runs)
    one = driver_statement(dialect, statement, table, keys)
    row = "(" + ", ".join("?" * len(keys)) + ")"
    assert one.block_sql == one.sql.replace(row, ", ".join([row] * ROWS_A_STATEMENT))
    assert one.block_sql is not None and one.block_sql.count("?") == ROWS_A_STATEMENT * len(keys)


def test_rows_are_cut_into_whole_blocks_in_order(dialect: sa.Dialect) -> None:
    one = driver_statement(dialect, plain_insert(trace), trace, ("step",))
    rows = [(str(n),) for n in range(MANY)]
    blocks, rest = rows_at_once(one, rows)
    assert [len(block) for block in blocks] == [ROWS_A_STATEMENT, ROWS_A_STATEMENT]
    assert [v for block in blocks for v in block] + [v for (v,) in rest] == [v for (v,) in rows]


def test_other_statements_have_no_block(dialect: sa.Dialect) -> None:
    update = DriverStatement(
        "UPDATE trace SET step = ? WHERE id = ?", ("step", "id"), (None,) * 2, True
    )
    assert update.block_sql is None
    insert = driver_statement(dialect, plain_insert(trace), trace, ("step", "kind"))
    named = DriverStatement(insert.sql, insert.keys, insert.processors, False)  # PostgreSQL's
    assert insert.block_sql is not None and named.block_sql is None


def test_many_trace_entries_read_back_in_the_order_written(store: Store) -> None:
    entries = [make_trace(n, message=f"decision {n:03d}") for n in range(MANY)]
    with store.transaction() as uow:
        uow.add_trace(entries)
    with store.transaction() as uow:
        assert uow.trace_for_contact("contact-1") == entries


def test_many_messages_count_the_new_ones_only(store: Store) -> None:
    first = [make_message(n) for n in range(0, MANY, 3)]
    every = [make_message(n) for n in range(MANY)]
    with store.transaction() as uow:
        assert uow.add_messages(first) == len(first)
        # Keys already stored, and one met twice in a block, change nothing.
        assert uow.add_messages([*every, every[1]]) == MANY - len(first)
    with store.transaction() as uow:
        for message in every:
            assert uow.get_message(message.key) == message


def test_many_runs_upserted_keep_the_last_of_each(store: Store) -> None:
    with store.transaction() as uow:
        uow.save_contact(make_contact())
        uow.save_runs([make_run(n, position="0") for n in range(MANY)])
        last = [make_run(n, position="2") for n in range(MANY)]
        uow.save_runs([*[make_run(n, position="1") for n in range(MANY)], *last])
    with store.transaction() as uow:
        assert [uow.get_run(run.id) for run in last] == last
