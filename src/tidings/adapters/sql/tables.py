"""The SQL tables, as SQLModel classes. Rows, not the domain model: `mapping` converts both ways.

Indexes are only those the store's queries need. Partial indexes (unprocessed events, waiting
runs) are written with the same SQL expression on PostgreSQL and SQLite, and the queries repeat
that expression with literals (not bound parameters) so both planners can use them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from tidings.adapters.clock import as_utc

# Alembic and autogenerate see constraint names that are the same on every dialect.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC in and out. SQLite keeps naive UTC text, PostgreSQL `timestamptz`."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """UTC for the database; naive for SQLite, which would otherwise drop the offset."""
        if value is None:
            return None
        utc = as_utc(value)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Aware UTC whatever the driver returned (naive from SQLite, session zone from PG)."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY is rowid
JSONValue = sa.JSON(none_as_null=True)


class Row(SQLModel, registry=registry(metadata=sa.MetaData(naming_convention=NAMING))):
    """Base of the table classes: their own metadata, not SQLModel's global one."""


def _time(*, nullable: bool = False, **kwargs: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, **kwargs))


def _json(*, nullable: bool = False) -> Any:
    return Field(sa_column=sa.Column(JSONValue, nullable=nullable))


def _text(*, nullable: bool = False, **kwargs: Any) -> Any:
    return Field(sa_column=sa.Column(sa.Text(), nullable=nullable, **kwargs))


class ContactRow(Row, table=True):
    """A contact; its identifiers are rows of `contact_identifiers`."""

    __tablename__ = "contacts"

    id: str = _text(primary_key=True)
    attributes: dict[str, Any] = _json()
    timezone: str | None = _text(nullable=True)
    unsubscribed: list[str] = _json()
    created_at: datetime = _time()
    updated_at: datetime = _time()


class ContactIdentifierRow(Row, table=True):
    """One identifier (kind, value) and the one contact that holds it."""

    __tablename__ = "contact_identifiers"

    kind: str = _text(primary_key=True)
    value: str = _text(primary_key=True)
    contact_id: str = Field(
        sa_column=sa.Column(
            sa.Text(), sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )


class EventRow(Row, table=True):
    """One event in order of receipt (`seq`)."""

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_contact_id_occurred_at", "contact_id", "occurred_at"),
        sa.Index("ix_events_occurred_at", "occurred_at"),
    )

    seq: int | None = Field(
        default=None, sa_column=sa.Column(BigId, primary_key=True, autoincrement=True)
    )
    id: str = _text()
    name: str = _text()
    contact_id: str | None = _text(nullable=True)
    identifiers: dict[str, str] = _json()
    occurred_at: datetime = _time()
    received_at: datetime = _time()
    properties: dict[str, Any] = _json()
    contact_properties: dict[str, Any] = _json()
    object: dict[str, Any] | None = _json(nullable=True)
    conflicts: dict[str, str] = _json()
    source: str = _text()
    dedup_key: str | None = _text(nullable=True, unique=True)
    processed: bool = Field(
        default=False, sa_column=sa.Column(sa.Boolean(), nullable=False, default=False)
    )
    processed_at: datetime | None = _time(nullable=True)


class RunRow(Row, table=True):
    """One run of one workflow for one contact (and key)."""

    __tablename__ = "runs"
    __table_args__ = (sa.Index("ix_runs_contact_id_started_at", "contact_id", "started_at"),)

    id: str = _text(primary_key=True)
    workflow_id: str = _text()
    workflow_version: str = _text()
    contact_id: str = _text()
    key: str = _text()
    status: str = _text()
    position: str = _text()
    due_at: datetime | None = _time(nullable=True)
    waiting_for: list[str] = _json()
    started_at: datetime = _time()
    updated_at: datetime = _time()
    finished_at: datetime | None = _time(nullable=True)
    outcome: str | None = _text(nullable=True)
    reason: str | None = _text(nullable=True)
    trigger_event_id: str = _text()
    event: dict[str, Any] = _json()
    vars: dict[str, Any] = _json()
    seq: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))


class TraceRow(Row, table=True):
    """One trace entry; `id` keeps insertion order among entries with the same time."""

    __tablename__ = "trace"

    id: int | None = Field(
        default=None, sa_column=sa.Column(BigId, primary_key=True, autoincrement=True)
    )
    at: datetime = _time()
    contact_id: str = _text(index=True)
    workflow_id: str = _text()
    run_id: str | None = _text(nullable=True)
    step: str | None = _text(nullable=True)
    kind: str = _text()
    message: str = _text()
    data: dict[str, Any] = _json()


class MessageRow(Row, table=True):
    """One outbox message. `due_at` and `lease_until` are delivery bookkeeping, not domain."""

    __tablename__ = "messages"
    # In the claim's order (status, due time, then key; migration 0005), the key in collation
    # "C" on PostgreSQL as the claim orders it: see `ix_runs_waiting_due_at_id` below.
    __table_args__ = (
        sa.Index(
            "ix_messages_status_due_at_key",
            "status",
            "due_at",
            "key",
            postgresql_ops={"key": 'COLLATE "C"'},
        ),
    )

    key: str = _text(primary_key=True)
    channel: str = _text()
    run_id: str = _text()
    contact_id: str = _text(index=True)
    workflow_id: str = _text()
    step: str = _text()
    to: str = _text()
    sender: str | None = _text(nullable=True)
    reply_to: str | None = _text(nullable=True)
    subject: str | None = _text(nullable=True)
    html: str | None = _text(nullable=True)
    text: str = _text()
    transactional: bool = Field(sa_column=sa.Column(sa.Boolean(), nullable=False))
    created_at: datetime = _time()
    not_before: datetime = _time()
    status: str = _text()
    attempts: int = Field(sa_column=sa.Column(sa.Integer(), nullable=False))
    next_attempt_at: datetime | None = _time(nullable=True)
    last_error: str | None = _text(nullable=True)
    sent_at: datetime | None = _time(nullable=True)
    provider_id: str | None = _text(nullable=True)
    # max(not_before, next_attempt_at): the one column the claim query orders by.
    due_at: datetime = _time()
    lease_until: datetime | None = _time(nullable=True)


class WorkflowVersionRow(Row, table=True):
    """The source of a workflow version some run started on."""

    __tablename__ = "workflow_versions"

    workflow_id: str = _text(primary_key=True)
    version: str = _text(primary_key=True)
    source: str = _text()
    loaded_at: datetime = _time(server_default=sa.func.now())


metadata = Row.metadata
contacts = metadata.tables["contacts"]
contact_identifiers = metadata.tables["contact_identifiers"]
events = metadata.tables["events"]
runs = metadata.tables["runs"]
trace = metadata.tables["trace"]
messages = metadata.tables["messages"]
workflow_versions = metadata.tables["workflow_versions"]

# Partial indexes: the predicate objects are shared with the queries (see the module doc).
UNPROCESSED = events.c.processed == sa.false()
WAITING = runs.c.status == sa.literal_column("'waiting'")
sa.Index(
    "ix_events_unprocessed", events.c.seq, postgresql_where=UNPROCESSED, sqlite_where=UNPROCESSED
)
# In the claim's order (due time, then id): a crowd due at one instant is claimed a batch at a
# time without sorting all of it at every claim (migration 0004). PostgreSQL orders the claim by
# `id COLLATE "C"`, which an index in the database's collation cannot serve, even a C database's
# (the planner matches collations by identity); `postgresql_ops` is the text SQLAlchemy writes after
# the column, where PostgreSQL takes a collation, and it leaves reflection and SQLite unchanged.
sa.Index(
    "ix_runs_waiting_due_at_id",
    runs.c.due_at,
    runs.c.id,
    postgresql_where=WAITING,
    sqlite_where=WAITING,
    postgresql_ops={"id": 'COLLATE "C"'},
)
