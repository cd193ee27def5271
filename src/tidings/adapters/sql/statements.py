"""What every query mixin of the SQL unit of work shares: its connection and dialect helpers.

PostgreSQL and SQLite both speak `INSERT ... ON CONFLICT`, `RETURNING` and
`FOR UPDATE SKIP LOCKED` (SQLite ignores the last: it has one writer and `BEGIN IMMEDIATE`);
the few places they differ are here, so the queries themselves read the same for both.

The statements run once per event (`DriverStatement`) are compiled once per dialect and run on
the driver's own cursor, their values converted by the columns' own SQLAlchemy types: the same
rows, without SQLAlchemy's per-call work, which costs several times what SQLite does. On SQLite,
times and JSON are converted by quicker twins of those types' converters that write the same
text (tests compare them). The reads of a whole batch (`_select_rows`) are read the same way on
SQLite, times and JSON read back by twins that give the values SQLAlchemy gives; on PostgreSQL
psycopg already returns native values, and they go through SQLAlchemy as before.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, TypeVarTuple, cast, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import TypedReturnsRows

from tidings.adapters.clock import as_utc
from tidings.adapters.sql.engine import dump_json
from tidings.adapters.sql.tables import UTCDateTime
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


@dataclass(frozen=True)
class DriverStatement:
    """A statement as the driver takes it: its SQL, and how to turn column values into its
    parameters (by the columns' own types, as SQLAlchemy would)."""

    sql: str
    keys: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for one row of column values."""
        # A list comprehension: a generator into tuple() costs a frame switch per column.
        converted = [
            values[key] if process is None else process(values[key])
            for key, process in zip(self.keys, self.processors, strict=True)
        ]
        return tuple(converted) if self.positional else dict(zip(self.keys, converted, strict=True))


def _sqlite_time(value: Any) -> str | None:
    """`UTCDateTime` on SQLite: naive UTC as SQLAlchemy's SQLite DATETIME text."""
    if value is None:
        return None
    utc = value if value.tzinfo is UTC else as_utc(value)
    # An aware time's ISO text ends with its offset (+00:00): the naive text is what precedes it.
    text: str = utc.isoformat(" ", "microseconds")[:26]
    return text


def _json_encoder() -> Callable[[Any], str]:
    """`dump_json` without building an encoder per call (json.dumps does, for its options)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - Pythons without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode

    def fail(value: Any) -> Any:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    # No circular-reference bookkeeping: values come from decoded JSON; a cycle still fails
    # (RecursionError), as a value that cannot be stored.
    encode = make(None, fail, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda value: "".join(encode(value, 0))


_encode_json = _json_encoder()


def _sqlite_json(value: Any) -> str | None:
    """A `JSON(none_as_null=True)` value on SQLite, as `dump_json` writes it."""
    return None if value is None else _encode_json(value)


def bind_processor(column: sa.Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """How a value of `column` becomes a driver parameter on `dialect`."""
    return type_bind_processor(column.type, dialect)


def type_bind_processor(
    kind: sa.types.TypeEngine[Any], dialect: Dialect
) -> Callable[[Any], Any] | None:
    """How a value of type `kind` becomes a driver parameter on `dialect`."""
    if dialect.name == "sqlite":
        if isinstance(kind, UTCDateTime):
            return _sqlite_time
        if (
            isinstance(kind, sa.JSON)
            and kind.none_as_null
            and getattr(dialect, "_json_serializer", None) is dump_json
        ):
            return _sqlite_json
    return kind.dialect_impl(dialect).bind_processor(dialect)


# Bounded: a dialect is one engine's, and tests make many engines.
@functools.lru_cache(maxsize=64)
def driver_statement(
    dialect: Dialect, statement: sa.ClauseElement, table: sa.Table, keys: tuple[str, ...]
) -> DriverStatement:
    """`statement` (an INSERT into `table` of the columns `keys`) compiled for `dialect`."""
    compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(keys)))
    order = tuple(compiled.positiontup or ()) if compiled.positional else keys
    if set(order) != set(keys):  # pragma: no cover - a statement with other parameters
        raise ValueError(f"statement parameters {order} are not the columns {keys}")
    processors = tuple(bind_processor(table.c[key], dialect) for key in order)
    return DriverStatement(compiled.string, order, processors, compiled.positional)


def _sqlite_time_reader(dialect: Dialect) -> Callable[[Any], datetime | None]:
    """`UTCDateTime` read on SQLite: the text as written (`_sqlite_time`) parsed in C, any other
    text by SQLAlchemy's own converter (a shorter fraction means other microseconds to it)."""
    fallback = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert fallback is not None  # a TypeDecorator always converts its results

    def read(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str) and len(value) == 26 and value[10] == " " and value[19] == ".":
            # Read with its offset spelled out: several times quicker than replace(tzinfo=UTC).
            return datetime.fromisoformat(value + "+00:00")
        converted: datetime | None = fallback(value)
        return converted

    return read


def _sqlite_json_reader(value: Any) -> Any:
    """A JSON column read on SQLite without a custom deserializer: `json.loads`, as SQLAlchemy."""
    return None if value is None else json.loads(value)


def result_processor(
    kind: sa.types.TypeEngine[Any], dialect: Dialect
) -> Callable[[Any], Any] | None:
    """How a driver's value of a column of type `kind` becomes the value SQLAlchemy returns."""
    if dialect.name == "sqlite":
        if isinstance(kind, UTCDateTime):
            return _sqlite_time_reader(dialect)
        if isinstance(kind, sa.JSON) and getattr(dialect, "_json_deserializer", None) is None:
            return _sqlite_json_reader
    return kind.dialect_impl(dialect).result_processor(dialect, None)


@dataclass(frozen=True)
class DriverSelect:
    """A SELECT compiled for one dialect: its columns' names and result converters, and its
    parameters' converters by name."""

    compiled: SQLCompiler
    keys: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    binds: Mapping[str, Callable[[Any], Any] | None]

    def parameters(self, values: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The SQL (expanding parameters expanded) and the driver's parameters for `values`."""
        state = self.compiled.construct_expanded_state(dict(values))
        converted: list[Any] = []
        for name, value in zip(state.positiontup or (), state.positional_parameters, strict=True):
            # An expanded parameter (`ids_3`) has its converter in the state, not in `binds`.
            process = self.binds.get(name) or state.processors.get(name)
            converted.append(value if process is None else process(value))
        return state.statement, tuple(converted)

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        """One driver row as column values by name, converted as SQLAlchemy would."""
        return {
            key: value if process is None else process(value)
            for key, process, value in zip(self.keys, self.processors, values, strict=True)
        }


@functools.lru_cache(maxsize=64)
def driver_select(dialect: Dialect, statement: sa.Select[Any]) -> DriverSelect:
    """`statement` compiled for `dialect` (expanding parameters expanded per call)."""
    compiled = statement.compile(dialect=dialect)
    columns = list(statement.selected_columns)
    keys = tuple(str(column.key) for column in columns)
    processors = tuple(result_processor(column.type, dialect) for column in columns)
    binds = {name: type_bind_processor(bind.type, dialect) for name, bind in compiled.binds.items()}
    return DriverSelect(compiled, keys, processors, binds)


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
        parameters = [_converted(statement, values) for values in rows]
        cursor = self._driver_cursor()
        with self._driver_errors(statement, parameters):
            cursor.executemany(statement.sql, parameters)
        changed: int = cursor.rowcount
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
        select = driver_select(self._conn.dialect, statement)
        try:
            sql, parameters = select.parameters(values)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot read with a value: {exc}") from exc
        cursor = self._driver_cursor()
        with self._driver_errors(sql, parameters):
            cursor.execute(sql, parameters)
            rows = cursor.fetchall()
        for row in rows:
            yield select.row(row)

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
