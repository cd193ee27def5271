"""The hot inserts' own value converters on SQLite write exactly what SQLAlchemy's would, and
refuse what SQLAlchemy would refuse."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tidings.adapters.sql.engine import create_engine
from tidings.adapters.sql.statements import bind_processor
from tidings.adapters.sql.tables import events

PARIS = timezone(timedelta(hours=2))


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


def test_other_columns_keep_sqlalchemy_converters(dialect: sa.Dialect) -> None:
    ours = bind_processor(events.c["processed"], dialect)
    theirs = sqlalchemy_processor("processed", dialect)
    assert (ours(True) if ours else True) == (theirs(True) if theirs else True)
    assert bind_processor(events.c["name"], dialect) is None
