"""`tidings keys`: the keys clients send events with. `create` prints a new key once (only its
SHA-256 is stored), `list` shows them by id, `revoke` stops one at once.

`api` keys authenticate `/v3` (header `api-key`: add and read events); `tracker` keys the
tracker endpoints (header `ma-key`), and are public by nature, so they can only add events.
Keys given in `TIDINGS_API_KEYS` / `TIDINGS_TRACKER_KEYS` work too and are counted by `list`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from tidings.adapters.sql.keys import SqlKeyStore
from tidings.adapters.sql.store import SqlStore
from tidings.errors import ConfigError, StoreError
from tidings.model.keys import KeyKind
from tidings.settings import Settings, load_settings

app = typer.Typer(
    name="keys",
    help="API and tracker keys: create (shown once), list, revoke.",
    no_args_is_help=True,
)

Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        metavar="URL",
        help="SQLAlchemy URL (default: TIDINGS_DATABASE_URL, then tidings.toml).",
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise _fail(str(exc)) from exc


def _key_store(database: str | None, settings: Settings) -> SqlKeyStore:
    """The key store on a database whose schema is brought up to date first."""
    url = database or settings.database_url
    try:
        store = SqlStore(url)
        try:
            store.migrate()
        finally:
            store.close()
        return SqlKeyStore(url)
    except (ConfigError, StoreError) as exc:
        raise _fail(str(exc)) from exc


@app.command("create")
def create(
    kind: Annotated[KeyKind, typer.Option("--kind", help="api (/v3) or tracker (/api/v2).")],
    name: Annotated[str, typer.Option("--name", help="Who or what uses it, for people.")],
    database: Database = None,
) -> None:
    """Create a key and print it: it is shown this once and cannot be recovered."""
    keys = _key_store(database, _settings())
    try:
        key, secret = keys.create(kind, name, now=datetime.now(UTC))
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    finally:
        keys.close()
    header = "ma-key" if kind is KeyKind.tracker else "api-key"
    typer.echo(
        f"created {kind.value} key {key.id} ({name}); send it as the {header} header."
        " Store it now: it is not shown again.",
        err=True,
    )
    # Alone on stdout, so `KEY=$(tidings keys create ...)` captures just the key.
    typer.echo(secret)


@app.command("list")
def list_keys(database: Database = None) -> None:
    """List keys by id, kind and name (never the keys themselves)."""
    settings = _settings()
    keys = _key_store(database, settings)
    try:
        found = keys.list()
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    finally:
        keys.close()
    for key in found:
        created = key.created_at.isoformat(timespec="seconds") if key.created_at else "-"
        status = (
            f"revoked {key.revoked_at.isoformat(timespec='seconds')}"
            if key.revoked_at
            else "active"
        )
        typer.echo(f"{key.id}  {key.kind.value:<7}  {created}  {status:<33}  {key.name}")
    if not found:
        typer.echo("no keys in the database")
    env_api, env_tracker = len(settings.api_keys), len(settings.tracker_keys)
    if env_api or env_tracker:
        typer.echo(
            f"plus {env_api} api key(s) from TIDINGS_API_KEYS and {env_tracker} tracker key(s)"
            " from TIDINGS_TRACKER_KEYS"
        )


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (see `keys list`).")],
    database: Database = None,
) -> None:
    """Revoke a key: requests with it are refused (within seconds on a running daemon)."""
    keys = _key_store(database, _settings())
    try:
        key = keys.revoke(key_id, now=datetime.now(UTC))
    except StoreError as exc:
        raise _fail(str(exc)) from exc
    finally:
        keys.close()
    if key is None:
        raise _fail(f"no key with id {key_id!r}")
    typer.echo(f"revoked {key.kind.value} key {key.id} ({key.name})")
