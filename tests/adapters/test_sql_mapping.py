"""Rows to domain objects and back: a row's values in a plain dict (SQLite's driver reads) give
the same run as any other mapping of them (SQLAlchemy's rows), and the same refusals; rows
written as tuples in the table's order are the rows written by name."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from support.messages import T0, make_message
from support.records import make_contact, make_run, make_trace
from tidings.adapters.sql import mapping
from tidings.adapters.sql.driver import driver_statement
from tidings.adapters.sql.engine import create_engine
from tidings.adapters.sql.statements import insert_ignoring, plain_insert
from tidings.adapters.sql.tables import messages, runs, trace
from tidings.model.contacts import Channel
from tidings.model.messages import MessageStatus
from tidings.model.runs import Outcome, RunStatus

RUNS = [
    make_run(1),
    make_run(2, status=RunStatus.queued, vars={"wait_started_at": "x", "n": [1, {"a": None}]}),
    make_run(
        3,
        status=RunStatus.finished,
        outcome=Outcome.exited_goal,
        reason="goal reached: order_completed",
        due_at=None,
        finished_at=T0 + timedelta(hours=2),
        waiting_for=("order_completed", "cart_updated"),
        seq=4,
    ),
]


@pytest.mark.parametrize("run", RUNS, ids=["waiting", "queued", "finished"])
def test_a_run_read_from_a_dict_is_the_run_read_from_any_mapping(run: Any) -> None:
    values = mapping.run_values(run)
    values["waiting_for"] = list(values["waiting_for"])  # as JSON gives it back
    from_dict = mapping.run_from_row(dict(values))
    assert from_dict == mapping.run_from_row(MappingProxyType(values)) == run
    assert type(from_dict.status) is RunStatus and type(from_dict.waiting_for) is tuple


@pytest.mark.parametrize("column", ["status", "outcome"])
def test_a_run_row_of_an_unknown_state_is_refused_from_either(column: str) -> None:
    values = {**mapping.run_values(RUNS[2]), column: "paused"}
    for row in (dict(values), MappingProxyType(values)):
        with pytest.raises(ValueError, match="paused"):
            mapping.run_from_row(row)


def test_a_contact_s_unsubscribed_channels_read_back_as_a_set() -> None:
    contact = make_contact(unsubscribed=frozenset({Channel.sms, Channel.email}))
    values = mapping.contact_values(contact)
    read = mapping.contact_from_row(values, {"email_id": "user1@example.org"})
    assert read.unsubscribed == contact.unsubscribed
    assert all(type(channel) is Channel for channel in read.unsubscribed)


MESSAGES = [
    make_message(1),
    make_message(
        2,
        status=MessageStatus.failed,
        attempts=3,
        next_attempt_at=T0 + timedelta(hours=5),
        last_error="550 no such user",
        sent_at=None,
        provider_id="<x@y>",
    ),
]


@pytest.mark.parametrize("message", MESSAGES, ids=["new", "retried"])
def test_a_message_row_holds_its_delivery_state_as_saves_write_it(message: Any) -> None:
    values = mapping.message_values(message)
    assert tuple(values) == mapping.MESSAGE_COLUMNS
    assert values == {**values, **mapping.delivery_values(message), "lease_until": None}


@pytest.mark.parametrize(
    ("table", "statement", "columns", "rows"),
    [
        (trace, plain_insert(trace), mapping.TRACE_COLUMNS, [make_trace(1), make_trace(2)]),
        (
            messages,
            insert_ignoring(False, messages, ("key",), None),
            mapping.MESSAGE_COLUMNS,
            MESSAGES,
        ),
    ],
    ids=["trace", "outbox"],
)
def test_rows_written_in_order_are_the_rows_written_by_name(
    tmp_path: Path, table: Any, statement: Any, columns: tuple[str, ...], rows: list[Any]
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    insert = driver_statement(engine.dialect, statement, table, columns)
    by_row = mapping.trace_row if table is trace else mapping.message_row
    by_name = mapping.trace_values if table is trace else mapping.message_values
    assert insert.keys == columns  # the table's order: written as `*_row` gives them
    for row in rows:
        assert insert.ordered(by_row(row)) == insert.parameters(by_name(row))
    engine.dispose()


def test_rows_in_order_follow_the_tables_columns() -> None:
    assert tuple(c.name for c in runs.c) == mapping.RUN_COLUMNS
    assert tuple(c.name for c in trace.c if c.name != "id") == mapping.TRACE_COLUMNS
    assert tuple(c.name for c in messages.c) == mapping.MESSAGE_COLUMNS
    assert tuple(mapping.run_values(RUNS[2])) == mapping.RUN_COLUMNS
