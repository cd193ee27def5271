"""`SqlStore`: the store on SQLite or PostgreSQL, one SQLAlchemy connection per transaction.

    with store.transaction() as uow:     # BEGIN (IMMEDIATE on SQLite)
        events = uow.claim_events(100)   # FOR UPDATE SKIP LOCKED on PostgreSQL
        ...                              # COMMIT, or ROLLBACK if the block raised

Every SQLAlchemy error inside a transaction (including a commit that fails) comes out as a
`StoreError`; the database's own message is kept as its cause.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tidings.adapters.sql import mapping
from tidings.adapters.sql.contacts import ContactQueries
from tidings.adapters.sql.delivery_batch import DeliveryBatchQueries
from tidings.adapters.sql.driver import driver_statement
from tidings.adapters.sql.engine import create_engine, database_url, is_memory_sqlite
from tidings.adapters.sql.event_rows import EventRowQueries
from tidings.adapters.sql.events import EventQueries
from tidings.adapters.sql.migrate import Migration, current_revision, upgrade
from tidings.adapters.sql.outbox import OutboxQueries
from tidings.adapters.sql.runs import RunQueries
from tidings.adapters.sql.statements import plain_insert
from tidings.adapters.sql.tables import trace, workflow_versions
from tidings.errors import StoreError
from tidings.model.trace import TraceEntry
from tidings.ports import Store

_t = trace
_wv = workflow_versions


class SqlUnitOfWork(
    ContactQueries,
    EventQueries,
    EventRowQueries,
    RunQueries,
    OutboxQueries,
    DeliveryBatchQueries,
):
    """Everything the store offers, on one connection inside one transaction."""

    def add_trace(self, entries: Sequence[TraceEntry]) -> None:
        """Append trace entries (one executemany)."""
        if not entries:
            return
        columns = mapping.TRACE_COLUMNS
        insert = driver_statement(self._conn.dialect, plain_insert(_t), _t, columns)
        self._driver_many_of(insert, columns, entries, mapping.trace_row, mapping.trace_values)

    def trace_for_contact(
        self, contact_id: str, workflow_id: str | None = None
    ) -> list[TraceEntry]:
        """A contact's trace in time order (entries at the same time in the order added)."""
        where = [_t.c.contact_id == contact_id]
        if workflow_id is not None:
            where.append(_t.c.workflow_id == workflow_id)
        stmt = sa.select(_t).where(*where).order_by(_t.c.at, _t.c.id)
        return [mapping.trace_from_row(row) for row in self._execute(stmt).mappings()]

    def save_workflow_version(self, workflow_id: str, version: str, source: str) -> None:
        """Keep a version's source; the same version with other source is refused."""
        stmt = self._ignoring(_wv, "workflow_id", "version", returning="version")
        values = {"workflow_id": workflow_id, "version": version, "source": source}
        inserted = self._execute(stmt, values).first()
        if inserted is None and self.get_workflow_version(workflow_id, version) != source:
            raise StoreError(
                f"workflow {workflow_id!r} version {version!r} is already kept"
                " with different source"
            )

    def get_workflow_version(self, workflow_id: str, version: str) -> str | None:
        """The source of a kept version, or None."""
        source: str | None = self._execute(
            sa.select(_wv.c.source).where(
                _wv.c.workflow_id == workflow_id, _wv.c.version == version
            )
        ).scalar_one_or_none()
        return source


class _OneConnection:
    """Transactions of a store on one connection it keeps (`SqlStore.kept_connection`)."""

    def __init__(self, url: str, connection: sa.Connection) -> None:
        self._url = url
        self._connection = connection

    @contextmanager
    def transaction(self) -> Iterator[SqlUnitOfWork]:
        """As `SqlStore.transaction`, on the kept connection."""
        try:
            with self._connection.begin():
                yield SqlUnitOfWork(self._connection)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self._url}: {_describe(exc)}") from exc


def _describe(exc: SQLAlchemyError) -> str:
    """The database's own words when there are some, else SQLAlchemy's."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}".strip()
    return str(exc)


class SqlStore:
    """The store on a database URL (`sqlite:///FILE` or `postgresql://...`)."""

    def __init__(self, url: str, *, busy_timeout: timedelta = timedelta(seconds=30)) -> None:
        self.url = database_url(url).render_as_string(hide_password=True)
        self._engine = create_engine(url, busy_timeout=busy_timeout)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[SqlUnitOfWork]:
        """One unit of work: committed when the block ends, rolled back if it raises."""
        try:
            with self._engine.begin() as connection:
                yield SqlUnitOfWork(connection)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.url}: {_describe(exc)}") from exc

    @contextmanager
    def kept_connection(self) -> Iterator[Store]:
        """On SQLite, transactions on one connection until the block ends: the pool's checkout
        and return (with its reset) cost twice an empty transaction's own work. Elsewhere this
        store itself: PostgreSQL's pool also checks a connection is alive before each use, and an
        in-memory SQLite database has one connection for all, which must not be held."""
        if self.dialect != "sqlite" or is_memory_sqlite(self._engine.url):
            yield self
            return
        try:
            connection = self._engine.connect()
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.url}: {_describe(exc)}") from exc
        try:
            yield _OneConnection(self.url, connection)
        finally:
            connection.close()

    def migrate(self) -> Migration:
        """Upgrade the schema to the newest revision (Alembic `upgrade head`)."""
        try:
            return upgrade(self._engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.url}: migration failed: {_describe(exc)}") from exc
        except CommandError as exc:
            raise StoreError(f"{self.url}: migration failed: {exc}") from exc

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None: never migrated)."""
        try:
            with self._engine.connect() as connection:
                return current_revision(connection)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.url}: {_describe(exc)}") from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()
