"""What every query mixin of the SQL unit of work shares: its connection and dialect helpers.

PostgreSQL and SQLite both speak `INSERT ... ON CONFLICT`, `RETURNING` and
`FOR UPDATE SKIP LOCKED` (SQLite ignores the last: it has one writer and `BEGIN IMMEDIATE`);
the few places they differ are here, so the queries themselves read the same for both.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, TypeVarTuple, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.selectable import TypedReturnsRows

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
def upsert(postgres: bool, table: sa.Table, keys: tuple[str, ...]) -> Insert:
    """`INSERT ... ON CONFLICT (keys) DO UPDATE` of every other column."""
    stmt = _dialect_insert(postgres, table)
    replaced = {c.name: stmt.excluded[c.name] for c in table.c if c.name not in keys}
    return stmt.on_conflict_do_update(index_elements=list(keys), set_=replaced)


class Queries:
    """A unit of work's connection (one transaction) and the dialect it talks to."""

    def __init__(self, connection: sa.Connection) -> None:
        self._conn = connection
        self._postgres = connection.dialect.name == "postgresql"

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
            self._execute(upsert(self._postgres, table, keys), rows)

    def _text_order(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """Order text by code point on both dialects (PostgreSQL would use the locale)."""
        return column.collate("C") if self._postgres else column
