"""What every query mixin of the SQL unit of work shares: its connection and dialect helpers.

PostgreSQL and SQLite both speak `INSERT ... ON CONFLICT`, `RETURNING` and
`FOR UPDATE SKIP LOCKED` (SQLite ignores the last: it has one writer and `BEGIN IMMEDIATE`);
the few places they differ are here, so the queries themselves read the same for both.
The statements run once per event or per group are run on the driver's own cursor, compiled
by `tidings.adapters.sql.driver`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, TypeVarTuple, cast, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.selectable import TypedReturnsRows

from tidings.adapters.sql.driver import (
    ROWS_A_STATEMENT,
    DriverSelect,
    DriverStatement,
    driver_select,
    driver_statement,
    rows_at_once,
)
from tidings.errors import StoreError

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
Insert = postgresql.Insert | sqlite.Insert
# Well under both PostgreSQL's 65,535 and SQLite's 32,766 bound parameters per statement.
CHUNK = 1000


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dialect_insert(postgres: bool, table: sa.Table) -> Insert:
    return postgresql.insert(table) if postgres else sqlite.insert(table)


# Statements are built once per dialect and reused: building one (and its cache key) costs more
# than executing it, on the paths taken once per event.
@functools.cache
def insert_ignoring(
    postgres: bool, table: sa.Table, keys: tuple[str, ...], returning: str | None
) -> sa.Executable:
    """`INSERT ... ON CONFLICT (keys) DO NOTHING [RETURNING column]`."""
    stmt = _dialect_insert(postgres, table).on_conflict_do_nothing(index_elements=list(keys))
    return stmt if returning is None else stmt.returning(table.c[returning])


@functools.cache
def plain_insert(table: sa.Table) -> sa.ClauseElement:
    """`INSERT INTO table`, built once (the compiled form is cached by statement)."""
    return table.insert()


@functools.cache
def upsert(postgres: bool, table: sa.Table, keys: tuple[str, ...]) -> Insert:
    """`INSERT ... ON CONFLICT (keys) DO UPDATE` of every other column."""
    stmt = _dialect_insert(postgres, table)
    replaced = {c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=replaced)


def _converted(statement: DriverStatement, values: Mapping[str, Any]) -> Any:
    try:
        return statement.parameters(values)
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"cannot store a value: {exc}") from exc


class Queries:
    """A unit of work's connection (one transaction) and the dialect it talks to."""

    def __init__(self, connection: sa.Connection) -> None:
        self._conn = connection
        self._postgres = connection.dialect.name == "postgresql"
        self._cursor: Any = None

    def _driver_row(
        self, statement: DriverStatement, values: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """Run a statement for one row of values on the driver's cursor; the first row it
        returns. Errors are SQLAlchemy's, as if SQLAlchemy had run it."""
        parameters = _converted(statement, values)
        cursor = self._driver_cursor()
        with self._driver_errors(statement, parameters):
            cursor.execute(statement.sql, parameters)
            row: tuple[Any, ...] | None = cursor.fetchone()
        return row

    def _driver_many(self, statement: DriverStatement, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run a statement (no RETURNING) once per row of values, as one driver executemany;
        how many rows it inserted or changed in all (both drivers sum them)."""
        if not rows:
            return 0
        return self._driver_executemany(statement, [_converted(statement, v) for v in rows])

    def _driver_many_ordered(
        self, statement: DriverStatement, rows: Sequence[Sequence[Any]]
    ) -> int:
        """`_driver_many` of rows given as their values in the statement's order of columns (a
        positional statement): no mapping by name built for each row, then taken apart."""
        try:
            parameters = [statement.ordered(row) for row in rows]
        except (TypeError, ValueError, RecursionError) as exc:
            raise StoreError(f"cannot store a value: {exc}") from exc
        return self._driver_executemany(statement, parameters)

    def _driver_many_of(
        self,
        statement: DriverStatement,
        columns: tuple[str, ...],
        items: Sequence[T],
        row: Callable[[T], Sequence[Any]],
        values: Callable[[T], Mapping[str, Any]],
    ) -> int:
        """`_driver_many` of `items`: as `row` gives each one's values in `columns` order where
        the statement takes them in that order (SQLite's positional parameters), else as
        `values` gives them by name."""
        if statement.positional and statement.keys == columns:
            return self._driver_many_ordered(statement, [row(item) for item in items])
        return self._driver_many(statement, [values(item) for item in items])

    def _driver_executemany(self, statement: DriverStatement, parameters: list[Any]) -> int:
        """The driver's executemany of the statement over its rows' parameters; on SQLite an
        INSERT writes its rows ROWS_A_STATEMENT at a time (`DriverStatement.block_sql`), in
        the same order."""
        if not parameters:
            return 0
        cursor = self._driver_cursor()
        changed = 0
        with self._driver_errors(statement, parameters):
            if statement.block_sql is not None and len(parameters) >= ROWS_A_STATEMENT:
                blocks, parameters = rows_at_once(statement, parameters)
                cursor.executemany(statement.block_sql, blocks)
                changed = cursor.rowcount
            if parameters:
                cursor.executemany(statement.sql, parameters)
                changed += cursor.rowcount
        return changed

    def _driver_cursor(self) -> Any:
        if self._cursor is None:
            self._cursor = self._conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        return self._cursor

    @contextlib.contextmanager
    def _driver_errors(self, statement: DriverStatement | str, parameters: Any) -> Iterator[None]:
        """Driver errors raised as SQLAlchemy raises them; values it cannot store as ours."""
        dbapi_error = self._conn.dialect.loaded_dbapi.Error
        sql = statement if isinstance(statement, str) else statement.sql
        try:
            yield
        except dbapi_error as exc:
            raise DBAPIError.instance(
                sql, parameters, exc, dbapi_error, dialect=self._conn.dialect
            ) from exc
        except (TypeError, ValueError) as exc:
            # psycopg serialises JSON parameters while executing.
            raise StoreError(f"cannot store a value: {exc}") from exc

    def _select_rows(
        self, statement: sa.Select[Any], values: Mapping[str, Any]
    ) -> Iterator[Mapping[Any, Any]]:
        """The rows of a SELECT as column values by name; on SQLite read on the driver's cursor
        (a batch's reads: SQLAlchemy's result rows cost more than SQLite's work)."""
        if self._postgres:
            yield from self._execute(statement, dict(values)).mappings()
            return
        select, rows = self._driver_rows(statement, values)
        for row in rows:
            yield select.row(row)

    def _driver_rows(
        self, statement: sa.Select[Any], values: Mapping[str, Any]
    ) -> tuple[DriverSelect, list[tuple[Any, ...]]]:
        """SQLite only: a SELECT's rows as the driver gives them, and how to convert them."""
        select = driver_select(self._conn.dialect, statement)
        try:
            sql, parameters = select.parameters(values)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot read with a value: {exc}") from exc
        cursor = self._driver_cursor()
        with self._driver_errors(sql, parameters):
            cursor.execute(sql, parameters)
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return select, rows

    def _insert_many(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Plain INSERT of rows that all have the same columns, on the driver's cursor."""
        if rows:
            keys = tuple(rows[0])
            insert = driver_statement(self._conn.dialect, plain_insert(table), table, keys)
            self._driver_many(insert, rows)

    @overload
    def _execute(
        self, statement: TypedReturnsRows[*Ts], parameters: Any = None
    ) -> sa.CursorResult[*Ts]: ...

    @overload
    def _execute(
        self, statement: sa.Executable, parameters: Any = None
    ) -> sa.CursorResult[*tuple[Any, ...]]: ...

    def _execute(
        self, statement: sa.Executable, parameters: Any = None
    ) -> sa.CursorResult[*tuple[Any, ...]]:
        """Execute on this transaction's connection; a value the driver cannot store (not JSON,
        NaN) is a StoreError, as SQLAlchemy's own errors become at the transaction's end."""
        try:
            return self._conn.execute(statement, parameters)
        except (TypeError, ValueError) as exc:
            # psycopg serialises JSON parameters itself, outside SQLAlchemy's error wrapping.
            raise StoreError(f"cannot store a value: {exc}") from exc

    def _ignoring(self, table: sa.Table, *keys: str, returning: str | None = None) -> sa.Executable:
        """An INSERT on this dialect that does nothing for a row whose `keys` exist; with
        `returning`, it returns that column of each row it did insert."""
        return insert_ignoring(self._postgres, table, keys, returning)

    def _upsert(self, table: sa.Table, rows: Sequence[dict[str, Any]], *keys: str) -> None:
        """Insert rows; a row whose key exists replaces every other column (one executemany)."""
        if rows:
            stmt = cast(sa.ClauseElement, upsert(self._postgres, table, keys))
            columns = tuple(rows[0])
            self._driver_many(driver_statement(self._conn.dialect, stmt, table, columns), rows)

    def _text_order(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """Order text by code point on both dialects (PostgreSQL would use the locale)."""
        return column.collate("C") if self._postgres else column
