"""Engine creation for the two supported databases: SQLite (default) and PostgreSQL (psycopg 3).

SQLite gets WAL (readers never block the writer), a busy timeout (writers queue rather than
fail), foreign keys, and `BEGIN IMMEDIATE` for every transaction: the write lock is taken at
the start, so a claim followed by an update can never interleave with another writer's.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from tidings.errors import ConfigError

# Compact, Unicode kept as is (not \u-escaped), and NaN refused: PostgreSQL's JSON would refuse it
# later, less clearly, and SQLite would store something no JSON reader accepts.
dump_json = functools.partial(
    json.dumps, ensure_ascii=False, allow_nan=False, separators=(",", ":")
)


def database_url(url: str) -> URL:
    """The URL with its driver made explicit: `postgresql://` means psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        driver = parsed.get_driver_name()
        if parsed.drivername in ("postgresql", "postgres") or driver == "psycopg2":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        return parsed
    raise ConfigError(
        f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)}:"
        " use sqlite:///FILE or postgresql://USER@HOST/DB"
    )


def create_engine(url: str, *, busy_timeout: timedelta = timedelta(seconds=30)) -> Engine:
    """An engine for `url`, configured for Tidings' transactions on its dialect."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout)
    return sa.create_engine(
        parsed,
        json_serializer=dump_json,
        pool_pre_ping=True,
        connect_args={"connect_timeout": max(1, int(busy_timeout.total_seconds()))},
    )


def is_memory_sqlite(url: URL) -> bool:
    """True for `sqlite://` and `sqlite:///:memory:` (one database per connection)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _sqlite_engine(url: URL, busy_timeout: timedelta) -> Engine:
    timeout_ms = int(busy_timeout.total_seconds() * 1000)
    options: dict[str, Any] = {
        "json_serializer": dump_json,
        "connect_args": {"check_same_thread": False, "timeout": timeout_ms / 1000},
    }
    if is_memory_sqlite(url):
        # An in-memory database lives in one connection: share it, or each thread sees its own.
        options["poolclass"] = StaticPool
    engine = sa.create_engine(url, **options)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's `begin` event issue BEGIN itself (pysqlite would defer it otherwise).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: an acknowledged event must survive a power cut, not only a process crash.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={timeout_ms:d}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # On the driver's connection: SQLAlchemy's execution path (context, events, result)
        # was about a third of an empty transaction's CPU, for a statement with no result.
        # Its errors are wrapped as SQLAlchemy would, so a busy database is still a StoreError.
        try:
            connection.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc

    return engine
