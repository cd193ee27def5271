"""`tidings db`: the database schema. `upgrade` brings it to this version's newest revision
(safe to run again: it then says there was nothing to do); `current` shows where it is.

The database is `--database URL`, else `TIDINGS_DATABASE_URL` / `tidings.toml`, else the
default SQLite file. Exit status: 0 when done (for `current`: when the schema is the newest),
1 when the database cannot be used or (for `current`) needs an upgrade.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tidings.adapters.sql.engine import database_url, is_memory_sqlite
from tidings.adapters.sql.migrate import head_revision, is_known_revision
from tidings.adapters.sql.store import SqlStore
from tidings.errors import ConfigError, StoreError
from tidings.settings import load_settings

app = typer.Typer(
    name="db",
    help="Database schema: upgrade it, or show its revision.",
    no_args_is_help=True,
)

Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        metavar="URL",
        help="SQLAlchemy URL, e.g. sqlite:///tidings.db or postgresql://user@host/db"
        " (default: TIDINGS_DATABASE_URL, then tidings.toml).",
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _url(database: str | None) -> str:
    """The URL to use: the option, else the settings."""
    try:
        return database or load_settings().database_url
    except ConfigError as exc:
        raise _fail(str(exc)) from exc


@app.command("upgrade")
def upgrade(database: Database = None) -> None:
    """Upgrade the database schema to the newest revision (creating the tables if needed)."""
    try:
        store = SqlStore(_url(database))
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    try:
        migration = store.migrate()
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    if migration.changed:
        before = migration.before or "an empty database"
        typer.echo(f"{store.url}: upgraded from {before} to revision {migration.after}")
    else:
        typer.echo(f"{store.url}: already at the newest revision {migration.after}; nothing to do")


@app.command("current")
def current(database: Database = None) -> None:
    """Show the database's schema revision and whether it is the newest."""
    url = _url(database)
    try:
        parsed = database_url(url)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    shown = parsed.render_as_string(hide_password=True)
    head = head_revision()
    sqlite_file = parsed.get_backend_name() == "sqlite" and not is_memory_sqlite(parsed)
    # Opening a missing SQLite file would create it: say it is missing instead.
    if sqlite_file and not Path(parsed.database or "").exists():
        typer.echo(f"{shown}: no database file yet; run `tidings db upgrade` (newest: {head})")
        raise typer.Exit(1)
    store = SqlStore(url)
    try:
        revision = store.current_revision()
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    finally:
        store.close()
    if revision == head:
        typer.echo(f"{shown}: at revision {revision}, the newest")
        return
    if revision is not None and not is_known_revision(revision):
        typer.echo(f"{shown}: at revision {revision}, unknown to this version (newer?)")
        raise typer.Exit(1)
    state = f"at revision {revision}" if revision else "not migrated"
    typer.echo(f"{shown}: {state}; run `tidings db upgrade` to reach {head}")
    raise typer.Exit(1)
