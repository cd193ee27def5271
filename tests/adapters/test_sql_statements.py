"""The hot inserts' own value converters on SQLite write exactly what SQLAlchemy's would, and
refuse what SQLAlchemy would refuse; the batch reads' converters read back what SQLAlchemy
reads, and a SELECT run on the driver's cursor gives SQLAlchemy's rows."""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from support.messages import make_message
from support.records import make_event, make_run, make_trace
from tidings.adapters.sql import mapping
from tidings.adapters.sql.driver import (
    KEPT_EXPANSIONS,
    KEPT_TIME_TEXTS,
    DriverSelect,
    DriverStatement,
    bind_processor,
    driver_select,
    driver_statement,
    result_processor,
)
from tidings.adapters.sql.engine import create_engine
from tidings.adapters.sql.statements import Queries, plain_insert, upsert
from tidings.adapters.sql.store import SqlStore
from tidings.adapters.sql.tables import events, messages, runs, trace

PARIS = timezone(timedelta(hours=2))
ONE_COLUMN = sa.Table("one", sa.MetaData(), sa.Column("at", events.c["occurred_at"].type))


@pytest.fixture
def dialect(tmp_path: Path) -> Iterator[sa.Dialect]:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    yield engine.dialect
    engine.dispose()


def sqlalchemy_processor(column: str, dialect: sa.Dialect) -> Any:
    return events.c[column].type.dialect_impl(dialect).bind_processor(dialect)


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 5, 1, 9, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 9, 0, 0, 7, tzinfo=UTC),
        datetime(2024, 5, 1, 11, 30, 15, 123456, tzinfo=PARIS),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 5, 1, 9, 0, tzinfo=ZoneInfo("UTC")),  # UTC, yet not the `UTC` object
        datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris")),
        None,
    ],
)
def test_times_are_written_as_sqlalchemy_writes_them(dialect: sa.Dialect, value: Any) -> None:
    ours = bind_processor(events.c["occurred_at"], dialect)
    theirs = sqlalchemy_processor("occurred_at", dialect)
    assert ours is not None and theirs is not None
    assert ours(value) == theirs(value)


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"cart_id": "c-1", "total": 42.5, "n": 3, "ok": True, "none": None},
        {"items": [{"sku": "🛒", "name": "Zoë", "rtl": "שלום", "mark": "e\u0301"}], "big": 10**30},
        {"nested": {"a": [1, 2.0, -0.0, 1e300, [], {}]}, "esc": 'quote " back \\ nl \n'},
        None,
        [],  # empty containers and other false values: written without the encoder or with it
        (),
        0,
        "",
        False,
    ],
)
def test_json_is_written_as_sqlalchemy_writes_it(dialect: sa.Dialect, value: Any) -> None:
    ours = bind_processor(events.c["properties"], dialect)
    theirs = sqlalchemy_processor("properties", dialect)
    assert ours is not None and theirs is not None
    assert ours(value) == theirs(value)


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        ("occurred_at", datetime(2024, 5, 1), ValueError),  # naive: its meaning would be a guess
        ("properties", {"score": math.nan}, ValueError),
        ("properties", {"score": math.inf}, ValueError),
        ("properties", {"when": datetime(2024, 5, 1, tzinfo=UTC)}, TypeError),
    ],
)
def test_what_sqlalchemy_refuses_is_refused(
    dialect: sa.Dialect, column: str, value: Any, error: type[Exception]
) -> None:
    ours = bind_processor(events.c[column], dialect)
    theirs = sqlalchemy_processor(column, dialect)
    assert ours is not None and theirs is not None
    with pytest.raises(error):
        theirs(value)
    with pytest.raises(error):
        ours(value)


def test_a_time_written_again_is_written_as_sqlalchemy_writes_it(dialect: sa.Dialect) -> None:
    """Texts are kept per instant: the same instant at another offset has the same text, a
    naive time equal to a kept one is still refused, and a full store of texts starts over."""
    ours = bind_processor(events.c["occurred_at"], dialect)
    theirs = sqlalchemy_processor("occurred_at", dialect)
    assert ours is not None and theirs is not None
    at = datetime(2024, 5, 1, 9, 0, 0, 7, tzinfo=UTC)
    same_instant = [at, at.astimezone(PARIS), at.astimezone(ZoneInfo("Europe/Paris")), at]
    assert [ours(value) for value in same_instant] == [theirs(value) for value in same_instant]
    with pytest.raises(ValueError):
        ours(at.replace(tzinfo=None))
    many = [at + timedelta(seconds=n) for n in range(KEPT_TIME_TEXTS + 5)]
    assert [ours(value) for value in many] == [theirs(value) for value in many]
    assert [ours(value) for value in many[:5]] == [theirs(value) for value in many[:5]]


def test_other_columns_keep_sqlalchemy_converters(dialect: sa.Dialect) -> None:
    ours = bind_processor(events.c["processed"], dialect)
    theirs = sqlalchemy_processor("processed", dialect)
    assert (ours(True) if ours else True) == (theirs(True) if theirs else True)
    assert bind_processor(events.c["name"], dialect) is None


def sqlalchemy_reader(column: str, dialect: sa.Dialect) -> Any:
    return events.c[column].type.dialect_impl(dialect).result_processor(dialect, None)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01 09:00:00.000000",  # as the store writes every time
        "2024-05-01 09:00:00.000007",
        "0999-01-02 03:04:05.123456",
        "2024-05-01 09:00:00.5",  # other forms (written by hand): SQLAlchemy's own reading
        "2024-05-01 09:00:00",
        "2024-05-01T09:00:00.123456",
        "2024-05-01",
        None,
    ],
)
def test_times_are_read_as_sqlalchemy_reads_them(dialect: sa.Dialect, text: str | None) -> None:
    ours = result_processor(events.c["occurred_at"].type, dialect)
    theirs = sqlalchemy_reader("occurred_at", dialect)
    assert ours is not None and theirs is not None
    assert ours(text) == theirs(text)
    if text is not None:
        assert ours(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        '{"cart_id":"c-1","total":42.5,"n":3,"ok":true,"none":null}',
        '{"sku":"🛒"}',
        "[]",
        "{}",
        "null",
        '"text"',
        "12345678901234567890123",
        '{"a":"\\ud83d\\uded2"}',  # escapes, as other writers may store them
        ' {"a": 1} ',  # whitespace around: read by json.loads, not the scanner alone
        '{"a":1}\n',
    ],
)
def test_json_is_read_as_sqlalchemy_reads_it(dialect: sa.Dialect, text: str) -> None:
    ours = result_processor(events.c["properties"].type, dialect)
    theirs = sqlalchemy_reader("properties", dialect)
    assert ours is not None and theirs is not None
    assert ours(text) == theirs(text)
    assert ours(None) == theirs(None)


def test_an_empty_container_read_is_a_new_one_each_time(dialect: sa.Dialect) -> None:
    ours = result_processor(events.c["properties"].type, dialect)
    assert ours is not None
    first, second = ours("{}"), ours("{}")
    first["changed"] = True
    assert second == {} and ours("{}") == {} and ours("[]") == [] and ours("[]") is not ours("[]")


@pytest.mark.parametrize("text", ['{"a":1} x', '{"a":', "", "\ufeff{}", "NaNx", '{"a":1}{}'])
def test_json_sqlalchemy_refuses_is_refused_alike(dialect: sa.Dialect, text: str) -> None:
    ours = result_processor(events.c["properties"].type, dialect)
    theirs = sqlalchemy_reader("properties", dialect)
    assert ours is not None and theirs is not None
    with pytest.raises(ValueError) as expected:
        theirs(text)
    with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
        ours(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a":[1,2.5,"x"]}',  # as the store writes every value
        "[]",
        ' {"a": 1} ',  # space around it
        '{"a":1} x',  # text after it
        '{"a":1}{}',
        "",
        '{"a":',
        "NaN",
        '"é\\u00e9"',
        b'{"a":1}',
    ],
)
def test_json_is_read_or_refused_as_json_loads_does(dialect: sa.Dialect, text: Any) -> None:
    ours = result_processor(events.c["properties"].type, dialect)
    assert ours is not None
    try:
        expected = json.loads(text)
    except json.JSONDecodeError as exc:
        with pytest.raises(json.JSONDecodeError) as raised:
            ours(text)
        assert (raised.value.msg, raised.value.pos) == (exc.msg, exc.pos)
    else:
        assert repr(ours(text)) == repr(expected)


def test_a_select_on_the_driver_gives_sqlalchemy_s_rows(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    table = sa.Table(
        "t",
        sa.MetaData(),
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("at", events.c["occurred_at"].type),
        sa.Column("data", events.c["properties"].type),
        sa.Column("n", sa.Integer()),
    )
    rows = [
        {"id": "a", "at": datetime(2024, 5, 1, 9, 0, 0, 7, tzinfo=UTC), "data": {"x": 1}, "n": 1},
        {"id": "b", "at": datetime(2024, 5, 2, tzinfo=PARIS), "data": None, "n": None},
        {"id": "c", "at": None, "data": {"é": [1.5, None]}, "n": 3},
    ]
    select = (
        sa.select(table, sa.literal("x").label("extra"))
        .where(
            table.c.id.in_(sa.bindparam("ids", expanding=True)),
            table.c.at <= sa.bindparam("until", type_=events.c["occurred_at"].type),
        )
        .order_by(table.c.id)
    )
    values = {"ids": ["a", "b", "missing"], "until": datetime(2024, 5, 2, tzinfo=UTC)}
    try:
        with engine.begin() as connection:
            table.create(connection)
            connection.execute(table.insert(), rows)
            theirs = [dict(row) for row in connection.execute(select, values).mappings()]
            ours = list(Queries(connection)._select_rows(select, values))
    finally:
        engine.dispose()
    assert [row["id"] for row in ours] == ["a", "b"]
    assert ours == theirs


def _expanded_by_sqlalchemy(
    select: DriverSelect, values: dict[str, Any]
) -> tuple[str, tuple[Any, ...]]:
    """What `DriverSelect.parameters` gave before expansions were kept: SQLAlchemy's expansion
    of these very values, each converted as `_select_rows` converts it."""
    state = select.compiled.construct_expanded_state(dict(values))
    converted = []
    for name, value in zip(state.positiontup or (), state.positional_parameters, strict=True):
        process = select.binds.get(name) or state.processors.get(name)
        converted.append(value if process is None else process(value))
    return state.statement, tuple(converted)


def test_kept_expansions_give_sqlalchemy_s_sql_and_parameters(dialect: sa.Dialect) -> None:
    at = events.c["occurred_at"]
    select = (
        sa.select(events.c.id, sa.literal("x").label("extra"))
        .where(
            events.c.id.in_(sa.bindparam("ids", expanding=True)),
            at.in_(sa.bindparam("times", expanding=True)),
            events.c.name == sa.bindparam("name"),
            at <= sa.bindparam("until", type_=at.type),
        )
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )
    compiled = driver_select(dialect, select)
    assert compiled.expanding == ("ids", "times")
    t = datetime(2024, 5, 1, 9, 0, 0, 7, tzinfo=PARIS)
    calls: list[dict[str, Any]] = [
        {"ids": ["a", "b"], "times": [t], "name": "n", "until": t, "limit": 5},
        # The same lengths again, other values: the kept expansion, refilled.
        {"ids": ["c", "d"], "times": [t + timedelta(days=1)], "name": "m", "until": t, "limit": 1},
        {"ids": [], "times": [], "name": "n", "until": None, "limit": 2},
        {"ids": ("e",), "times": [t, t, None], "name": "n", "until": t, "limit": 3},
        {"ids": [f"id{i}" for i in range(1000)], "times": [t], "name": "", "until": t, "limit": 0},
    ]
    for values in calls:
        assert compiled.parameters(values) == _expanded_by_sqlalchemy(compiled, values)
        assert compiled.parameters(values) == _expanded_by_sqlalchemy(compiled, values)


def test_a_select_without_lists_keeps_one_expansion_of_sqlalchemy_s(dialect: sa.Dialect) -> None:
    at = events.c["occurred_at"]
    select = (
        sa.select(events.c.id, sa.literal("x").label("extra"))
        .where(events.c.contact_id == sa.bindparam("contact"), at <= sa.bindparam("until"))
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )
    compiled = driver_select(dialect, select)
    assert (compiled.expanding, compiled.kept) == ((), True)
    t = datetime(2024, 5, 1, 9, 0, 0, 7, tzinfo=PARIS)
    calls: list[dict[str, Any]] = [
        {"contact": "c1", "until": t, "limit": 5},
        {"contact": "c2", "until": t + timedelta(days=1), "limit": 1},
        {"contact": "c3", "until": None, "limit": 0},
    ]
    for values in calls:
        assert compiled.parameters(values) == _expanded_by_sqlalchemy(compiled, values)
    assert len(compiled._expansions) == 1


def test_values_written_into_the_sql_are_expanded_each_call(dialect: sa.Dialect) -> None:
    select = sa.select(events.c.id).where(
        events.c.id.in_(sa.bindparam("ids", expanding=True)),
        events.c.name == sa.bindparam("name", literal_execute=True),
    )
    compiled = driver_select(dialect, select)
    assert (compiled.expanding, compiled.kept) == ((), False)
    for name in ("a", "b"):
        values = {"ids": ["x", "y"], "name": name}
        assert compiled.parameters(values) == _expanded_by_sqlalchemy(compiled, values)
        assert f"'{name}'" in compiled.parameters(values)[0]


def test_an_expanding_value_other_than_a_list_is_expanded_by_sqlalchemy(
    dialect: sa.Dialect,
) -> None:
    select = sa.select(events.c.id).where(events.c.id.in_(sa.bindparam("ids", expanding=True)))
    compiled = driver_select(dialect, select)
    values: dict[str, Any] = {"ids": frozenset(["x"])}
    assert compiled.parameters(values) == _expanded_by_sqlalchemy(compiled, values)
    assert compiled.parameters(values)[1] == ("x",)


def test_expansions_kept_are_bounded(dialect: sa.Dialect) -> None:
    select = sa.select(events.c.id).where(events.c.id.in_(sa.bindparam("ids", expanding=True)))
    compiled = driver_select(dialect, select)
    for length in range(KEPT_EXPANSIONS + 10):
        values: dict[str, Any] = {"ids": [f"id{i}" for i in range(length)]}
        assert compiled.parameters(values) == _expanded_by_sqlalchemy(compiled, values)
    assert len(compiled._expansions) == KEPT_EXPANSIONS


def test_tuple_in_lists_are_expanded_by_sqlalchemy(dialect: sa.Dialect) -> None:
    pair = sa.tuple_(events.c.id, events.c.name)
    select = sa.select(events.c.id).where(pair.in_(sa.bindparam("pairs", expanding=True)))
    compiled = driver_select(dialect, select)
    assert (compiled.expanding, compiled.kept) == ((), False)
    values: dict[str, Any] = {"pairs": [("a", "x"), ("b", "y")]}
    assert compiled.parameters(values) == _expanded_by_sqlalchemy(compiled, values)
    assert compiled.parameters(values)[1] == ("a", "x", "b", "y")


def test_events_marked_processed_on_the_driver_are_the_rows_sqlalchemy_marks(
    tmp_path: Path,
) -> None:
    """Both halves of a log marked, one by the store, one by SQLAlchemy's own UPDATE: the same
    columns, the same kind of timestamp; and only the seqs given."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = SqlStore(url)
    store.migrate()
    engine = create_engine(url)
    try:
        with store.transaction() as uow:
            for n in range(1, 8):
                uow.add_event(make_event(n))
            uow.mark_events_processed([1, 3, 3, 5])
        with engine.begin() as connection:
            connection.execute(
                sa.update(events)
                .where(events.c.seq.in_([2, 4]))
                .values(processed=True, processed_at=sa.func.now())
            )
            rows = connection.exec_driver_sql(
                "SELECT seq, processed, typeof(processed_at), length(processed_at) FROM events"
            ).all()
    finally:
        engine.dispose()
        store.close()
    marked = (1, "text", 19)  # CURRENT_TIMESTAMP: 'YYYY-MM-DD HH:MM:SS'
    assert [tuple(row) for row in rows] == [
        (seq, *(marked if seq <= 5 else (0, "null", None))) for seq in range(1, 8)
    ]


@pytest.mark.parametrize("count", [1, 3, 5, 8, 600, 1001])
def test_any_number_of_events_marked_processed_marks_those_and_no_other(
    migrated_sqlite_file: Path, tmp_path: Path, count: int
) -> None:
    """The UPDATE is padded to a power of two with the last seq given: never another row."""
    path = tmp_path / "tidings.db"
    shutil.copyfile(migrated_sqlite_file, path)
    store = SqlStore(f"sqlite:///{path}")
    try:
        with store.transaction() as uow:
            for n in range(1, 2 * count + 2):
                uow.add_event(make_event(n))
            uow.mark_events_processed(list(range(2, 2 * count + 2, 2)))
            left = [e.seq for e in uow.claim_events(3 * count)]
    finally:
        store.close()
    assert left == list(range(1, 2 * count + 2, 2))


@pytest.mark.parametrize(
    "keys",
    [
        ("processed",),  # one column (a column default comes in as a parameter anyway)
        ("name", "occurred_at", "properties", "processed"),
        ("seq", *mapping.event_values(make_event(), "k")),
    ],
)
@pytest.mark.parametrize("postgres", [False, True])
def test_a_row_s_parameters_are_its_columns_converted_in_the_statement_s_order(
    dialect: sa.Dialect, keys: tuple[str, ...], postgres: bool
) -> None:
    on = postgresql.psycopg.dialect() if postgres else dialect  # type: ignore[no-untyped-call]
    values = {**mapping.event_values(make_event(3, properties={"a": [1]}), "k"), "seq": 3}
    statement = driver_statement(on, plain_insert(events), events, keys)
    expected = [
        values[key] if process is None else process(values[key])
        for key, process in zip(statement.keys, statement.processors, strict=True)
    ]
    parameters = statement.parameters(values)
    if statement.positional:
        assert isinstance(parameters, tuple)
        assert [_unwrapped(v) for v in parameters] == [_unwrapped(v) for v in expected]
    else:
        assert isinstance(parameters, dict)
        assert list(parameters) == list(statement.keys)
        assert [_unwrapped(v) for v in parameters.values()] == [_unwrapped(v) for v in expected]


def _unwrapped(value: Any) -> Any:
    """psycopg's JSON parameter (which has no ==) as the value it wraps."""
    return getattr(value, "obj", value)


def _sqlalchemy_parameters(table: sa.Table, dialect: sa.Dialect, row: dict[str, Any]) -> list[Any]:
    """Each column's value of a row converted by the column type's own SQLAlchemy converter."""
    converted = []
    for key, value in row.items():
        process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
        converted.append(value if process is None else process(value))
    return converted


@pytest.mark.parametrize(
    ("table", "statement", "row"),
    [
        (runs, upsert(False, runs, ("id",)), mapping.run_values(make_run(1))),
        (
            runs,
            upsert(False, runs, ("id",)),
            mapping.run_values(make_run(2, due_at=None, waiting_for=("order", "x"))),
        ),
        (trace, plain_insert(trace), mapping.trace_values(make_trace(3))),
        (messages, plain_insert(messages), mapping.message_values(make_message(4))),
        (ONE_COLUMN, plain_insert(ONE_COLUMN), {"at": datetime(2024, 5, 1, 9, 0, tzinfo=PARIS)}),
    ],
)
def test_a_batch_write_s_parameters_are_sqlalchemy_s(
    dialect: sa.Dialect, table: sa.Table, statement: sa.ClauseElement, row: dict[str, Any]
) -> None:
    """Runs, trace entries and messages as the batch writes them (values gathered together,
    then only the converted columns converted): what SQLAlchemy's converters give, column by
    column, by name on a named driver too."""
    positional = driver_statement(dialect, statement, table, tuple(row))
    ordered = {key: row[key] for key in positional.keys}  # the statement's order of columns
    expected = _sqlalchemy_parameters(table, dialect, ordered)
    assert list(positional.parameters(row)) == expected
    named = DriverStatement(positional.sql, positional.keys, positional.processors, False)
    assert named.parameters(row) == dict(zip(ordered, expected, strict=True))


def test_a_name_selected_twice_reads_its_last_column(dialect: sa.Dialect) -> None:
    """As a row built column by column: the last value of a name wins, converted by its own
    column's converter."""
    t = sa.table("t", sa.column("at", events.c["occurred_at"].type), sa.column("n", sa.Integer()))
    select = driver_select(dialect, sa.select(t.c.at, t.c.n, t.c.n.label("at")))
    assert select.keys == ("at", "n", "at")
    assert select.row(("2024-05-01 09:00:00.000000", 1, 2)) == {"at": 2, "n": 1}
    again = driver_select(dialect, sa.select(t.c.n.label("at"), t.c.at))
    assert again.row((2, "2024-05-01 09:00:00.000000")) == {
        "at": datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    }
