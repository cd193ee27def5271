"""Statements compiled once per dialect for the driver's own cursor, and their converters.

The statements run once per event (`DriverStatement`) are compiled once per dialect and run on
the driver's own cursor, their values converted by the columns' own SQLAlchemy types: the same
rows, without SQLAlchemy's per-call work, which costs several times what SQLite does. On SQLite,
times and JSON are converted by quicker twins of those types' converters that write the same
text (tests compare them). The reads of a whole batch (`DriverSelect`) are read the same way on
SQLite, times and JSON read back by twins that give the values SQLAlchemy gives; on PostgreSQL
psycopg already returns native values, and they go through SQLAlchemy as before.
"""

from __future__ import annotations

import functools
import itertools
import json
import json.scanner
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from tidings.adapters.clock import as_utc
from tidings.adapters.sql.engine import dump_json
from tidings.adapters.sql.tables import UTCDateTime

Converter = Callable[[Any], Any]


ROWS_A_STATEMENT = 50
"""Rows an INSERT writes at once on SQLite (`DriverStatement.block_sql`): a statement run once
per row cost SQLite a third more per trace row, a quarter more per outbox row, than one run per
50 rows; 50 rows of the widest table (the outbox's 23 columns) stay far under SQLite's 32,766
parameters."""


def rows_at_once(
    statement: DriverStatement, parameters: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """`parameters` (one tuple a row) as the parameters of `statement.block_sql` for as many
    whole blocks of rows as there are, in order, and the rows left over."""
    whole = len(parameters) - len(parameters) % ROWS_A_STATEMENT
    blocks = [
        tuple(itertools.chain.from_iterable(parameters[start : start + ROWS_A_STATEMENT]))
        for start in range(0, whole, ROWS_A_STATEMENT)
    ]
    return blocks, parameters[whole:]


def _converting(processors: Sequence[Converter | None]) -> tuple[tuple[int, Converter], ...]:
    """The positions that have a converter, with it: most columns (text, numbers) have none."""
    return tuple(
        (index, process) for index, process in enumerate(processors) if process is not None
    )


def _gatherer(keys: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """The values of `keys` as a tuple, in that order, gathered in C (`itemgetter`)."""
    if len(keys) == 1:  # itemgetter of one key gives the value itself, not a tuple of it
        (key,) = keys
        return lambda values: (values[key],)
    if not keys:
        return lambda _values: ()
    return operator.itemgetter(*keys)


@dataclass(frozen=True)
class DriverStatement:
    """A statement as the driver takes it: its SQL, and how to turn column values into its
    parameters (by the columns' own types, as SQLAlchemy would)."""

    sql: str
    keys: tuple[str, ...]
    processors: tuple[Converter | None, ...]
    positional: bool
    # A row's values gathered in C, then only the columns with a converter converted: a row
    # of a batch's writes (runs, trace, outbox) has 8 to 23 columns, 2 to 8 of them converted.
    _gather: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(
        init=False, compare=False, repr=False
    )
    _converting: tuple[tuple[int, Converter], ...] = field(init=False, compare=False, repr=False)
    # An INSERT of one row of `?` placeholders: the same statement with ROWS_A_STATEMENT rows
    # in its VALUES (None for any other statement). See `rows_at_once`.
    block_sql: str | None = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.keys) != len(self.processors):
            raise ValueError(f"{len(self.keys)} keys for {len(self.processors)} converters")
        object.__setattr__(self, "_gather", _gatherer(self.keys))
        object.__setattr__(self, "_converting", _converting(self.processors))
        object.__setattr__(self, "block_sql", self._block_sql())

    def _block_sql(self) -> str | None:
        if not self.positional or not self.sql.startswith("INSERT INTO "):
            return None
        one_row = "(" + ", ".join("?" * len(self.keys)) + ")"
        head, values, tail = self.sql.partition(f" VALUES {one_row}")
        if not values or values in tail:
            return None
        return f"{head} VALUES {', '.join([one_row] * ROWS_A_STATEMENT)}{tail}"

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for one row of column values."""
        gathered = self.ordered(self._gather(values))
        return gathered if self.positional else dict(zip(self.keys, gathered, strict=True))

    def ordered(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """The driver's positional parameters for one row's values given in `keys` order."""
        if not self._converting:
            return tuple(values)
        row = list(values)
        for index, process in self._converting:
            row[index] = process(row[index])
        return tuple(row)


# The texts of the times written lately. A batch's rows mostly carry the same few instants
# (its `now` in every trace entry, run and message; a quiet hours' end), and writing one costs
# more than looking it up. Keyed by the instant: equal times (whatever their offset) have one
# text. Cleared when full.
_TIME_TEXTS: dict[datetime, str] = {}
KEPT_TIME_TEXTS = 1024


def _sqlite_time(value: Any) -> str | None:
    """`UTCDateTime` on SQLite: naive UTC as SQLAlchemy's SQLite DATETIME text."""
    if value is None:
        return None
    if value.__class__ is not datetime:
        return _time_text(value)  # a subclass may compare or hash otherwise: not kept
    text = _TIME_TEXTS.get(value)
    if text is None:
        text = _time_text(value)  # a naive time raises here, before it could be kept
        if len(_TIME_TEXTS) >= KEPT_TIME_TEXTS:
            _TIME_TEXTS.clear()
        _TIME_TEXTS[value] = text
    return text


def _time_text(value: Any) -> str:
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


# The texts of empty containers, written and read without the encoder or the scanner: most
# runs' `vars` and `waiting_for`, most contacts' `unsubscribed`, many trace entries' `data`.
_EMPTY_TEXTS: dict[type, str] = {dict: "{}", list: "[]", tuple: "[]"}


def _sqlite_json(value: Any) -> str | None:
    """A `JSON(none_as_null=True)` value on SQLite, as `dump_json` writes it."""
    if value is None:
        return None
    if not value:
        empty = _EMPTY_TEXTS.get(type(value))
        if empty is not None:
            return empty
    return _encode_json(value)


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


def update_by_key(
    dialect: Dialect,
    table: sa.Table,
    key: sa.Column[Any],
    where: str,
    columns: tuple[str, ...],
    *,
    returning: bool = False,
) -> DriverStatement:
    """`UPDATE table SET columns WHERE key = :where [RETURNING key]` compiled for `dialect`
    (callers cache it per dialect and columns: building it costs more than the update)."""
    stmt = sa.update(table).where(key == sa.bindparam(where))
    stmt = stmt.returning(key) if returning else stmt
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    order = tuple(compiled.positiontup or ()) if compiled.positional else (*columns, where)
    if set(order) != {*columns, where}:  # pragma: no cover - a statement with other parameters
        raise ValueError(f"statement parameters {order} are not {columns} and {where}")
    processors = tuple(
        bind_processor(key if name == where else table.c[name], dialect) for name in order
    )
    return DriverStatement(compiled.string, order, processors, compiled.positional)


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


# The C scanner that `json.loads` ends in, called without its two Python frames (a claimed
# event has five JSON columns). None where Python has no C accelerator.
_scan_json = getattr(json.scanner, "c_make_scanner", lambda _decoder: None)(json.JSONDecoder())


def _sqlite_json_reader(value: Any) -> Any:
    """A JSON column read on SQLite without a custom deserializer: `json.loads`, as SQLAlchemy.
    Text the scanner reads whole from its first character (what we write) is decoded by it
    alone; anything else (whitespace around, a BOM, an error to raise) by `json.loads`."""
    if value is None:
        return None
    if value == "{}":  # a new container each time: the caller may change it
        return {}
    if value == "[]":
        return []
    if _scan_json is not None and type(value) is str:
        try:
            decoded, end = _scan_json(value, 0)
        except StopIteration:
            pass
        else:
            if end == len(value):
                return decoded
    return json.loads(value)


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


# Expansions kept per SELECT: a group's lookups use a few lengths, chunks of a batch another.
KEPT_EXPANSIONS = 256


@dataclass(frozen=True)
class _Place:
    """Where one positional parameter's value comes from: `values[name]`, its `index`-th item
    for an expanded list (index -1: the value itself), or a constant the statement holds."""

    name: str
    index: int = -1
    constant: Any = None


@dataclass(frozen=True)
class _Expansion:
    """A SELECT's SQL for one length of each expanding parameter, each positional parameter's
    place and converter."""

    sql: str
    places: tuple[_Place, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]


@dataclass(frozen=True)
class DriverSelect:
    """A SELECT compiled for one dialect: its columns' names and result converters, and its
    parameters' converters by name."""

    compiled: SQLCompiler
    keys: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    binds: Mapping[str, Callable[[Any], Any] | None]
    # Expanding parameters (`IN :ids`), when they are the only ones rendered per call: the
    # expanded SQL then depends on their lengths alone, and is kept per lengths and names given
    # (SQLAlchemy's expansion cost about 100 us a call, more than SQLite's indexed lookup).
    expanding: tuple[str, ...] = ()
    # Whether the SQL depends on nothing but those lengths (with none, it is fixed: still about
    # 12 us a call through SQLAlchemy's expansion). False: values are written into the SQL
    # itself, or a list SQLAlchemy takes apart; expanded by SQLAlchemy each call.
    kept: bool = True
    _expansions: dict[tuple[Any, ...], _Expansion] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )
    # The columns `row` converts: position, name, converter. A name selected twice keeps its
    # last column's value (as a dict built column by column would): only that one converted.
    _converting: tuple[tuple[int, str, Converter], ...] = field(
        init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        last = {key: index for index, key in enumerate(self.keys)}
        converting = [
            (index, self.keys[index], process)
            for index, process in _converting(self.processors)
            if last[self.keys[index]] == index
        ]
        object.__setattr__(self, "_converting", tuple(converting))

    def parameters(self, values: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The SQL (expanding parameters expanded) and the driver's parameters for `values`."""
        if self.kept and all(
            isinstance(values.get(name), (list, tuple)) for name in self.expanding
        ):
            return self._expanded(values)
        state = self.compiled.construct_expanded_state(dict(values))
        converted: list[Any] = []
        for name, value in zip(state.positiontup or (), state.positional_parameters, strict=True):
            # An expanded parameter (`ids_3`) has its converter in the state, not in `binds`.
            process = self.binds.get(name) or state.processors.get(name)
            converted.append(value if process is None else process(value))
        return state.statement, tuple(converted)

    def _expanded(self, values: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        lengths = tuple(len(values[name]) for name in self.expanding)
        key = (lengths, frozenset(values))
        expansion = self._expansions.get(key)
        if expansion is None:
            expansion = self._expansion(values, lengths)
            # Bounded (lists of up to a chunk's thousand values): past it, expanded each call.
            if len(self._expansions) < KEPT_EXPANSIONS:
                self._expansions[key] = expansion
        converted: list[Any] = []
        for place, process in zip(expansion.places, expansion.processors, strict=True):
            if place.name:
                item = values[place.name]
                value = item if place.index < 0 else item[place.index]
            else:
                value = place.constant
            converted.append(value if process is None else process(value))
        return expansion.sql, tuple(converted)

    def _expansion(self, values: Mapping[str, Any], lengths: tuple[int, ...]) -> _Expansion:
        """SQLAlchemy's own expansion, of places standing in for the values: each parameter it
        renders is traced back to where its value comes from in any call of these lengths."""
        stand_ins: dict[str, Any] = {name: _Place(name) for name in values}
        for name, length in zip(self.expanding, lengths, strict=True):
            stand_ins[name] = [_Place(name, index) for index in range(length)]
        state = self.compiled.construct_expanded_state(stand_ins)
        places: list[_Place] = []
        processors: list[Callable[[Any], Any] | None] = []
        for name, value in zip(state.positiontup or (), state.positional_parameters, strict=True):
            # A parameter not given is one the statement holds a value for (a literal).
            places.append(value if isinstance(value, _Place) else _Place("", constant=value))
            processors.append(self.binds.get(name) or state.processors.get(name))
        return _Expansion(state.statement, tuple(places), tuple(processors))

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        """One driver row as column values by name, converted as SQLAlchemy would."""
        # Built in C, then only the columns with a converter (times, JSON) converted.
        row = dict(zip(self.keys, values, strict=True))
        for index, key, process in self._converting:
            row[key] = process(values[index])
        return row


@functools.lru_cache(maxsize=64)
def driver_select(dialect: Dialect, statement: sa.Select[Any]) -> DriverSelect:
    """`statement` compiled for `dialect` (expanding parameters expanded per call)."""
    compiled = statement.compile(dialect=dialect)
    columns = list(statement.selected_columns)
    keys = tuple(str(column.key) for column in columns)
    processors = tuple(result_processor(column.type, dialect) for column in columns)
    binds = {name: type_bind_processor(bind.type, dialect) for name, bind in compiled.binds.items()}
    # Compared by identity: a bind parameter's == builds an expression.
    rendered = {id(bind) for bind in compiled.post_compile_params}
    expanding = tuple(name for name, bind in compiled.binds.items() if id(bind) in rendered)
    kept = not compiled.literal_execute_params and all(
        # A tuple IN list's items are taken apart by SQLAlchemy: a stand-in cannot trace them.
        compiled.binds[name].expanding
        and not getattr(compiled.binds[name].type, "_is_tuple_type", False)
        for name in expanding
    )
    return DriverSelect(compiled, keys, processors, binds, expanding if kept else (), kept)
