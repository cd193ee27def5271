"""Migrations: an empty database gets every table, exactly as the table classes describe them,
on SQLite and PostgreSQL; `tidings db upgrade` says what it did and is safe to run again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from typer.testing import CliRunner

from tidings.adapters.sql import keys  # noqa: F401  (its table is on the metadata too)
from tidings.adapters.sql.engine import create_engine
from tidings.adapters.sql.migrate import alembic_config, head_revision
from tidings.adapters.sql.store import SqlStore
from tidings.adapters.sql.tables import metadata
from tidings.cli.main import app
from tidings.errors import StoreError

STORE_TABLES = {
    "contacts",
    "contact_identifiers",
    "events",
    "runs",
    "trace",
    "messages",
    "workflow_versions",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database with no tables at all."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


@pytest.fixture
def engine(empty_url: str) -> Iterator[sa.Engine]:
    """An engine on the empty database, for looking at what migrations made."""
    engine = create_engine(empty_url)
    yield engine
    engine.dispose()


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest revision."""
    store = SqlStore(url)
    try:
        store.migrate()
    finally:
        store.close()


def schema_differences(engine: sa.Engine) -> list[object]:
    """What autogenerate would change to make the database match the table classes."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_upgrading_an_empty_database_creates_every_table_as_modelled(
    empty_url: str, engine: sa.Engine
) -> None:
    store = SqlStore(empty_url)
    migration = store.migrate()
    store.close()
    assert (migration.before, migration.after, migration.changed) == (None, head_revision(), True)
    tables = set(sa.inspect(engine).get_table_names())
    assert tables >= STORE_TABLES | {"alembic_version"}
    assert schema_differences(engine) == []


def test_the_partial_indexes_keep_their_predicates(empty_url: str, engine: sa.Engine) -> None:
    migrate(empty_url)
    indexes = {
        ix["name"]: ix.get("dialect_options", {})
        for table in ("events", "runs")
        for ix in sa.inspect(engine).get_indexes(table)
    }
    predicates = {
        name: next(iter(options.values()), "")
        for name, options in indexes.items()
        if name in ("ix_events_unprocessed", "ix_runs_waiting_due_at_id")
    }
    assert set(predicates) == {"ix_events_unprocessed", "ix_runs_waiting_due_at_id"}
    assert "processed" in str(predicates["ix_events_unprocessed"])
    assert "waiting" in str(predicates["ix_runs_waiting_due_at_id"])


def test_upgrading_twice_changes_nothing_the_second_time(empty_url: str) -> None:
    store = SqlStore(empty_url)
    store.migrate()
    again = store.migrate()
    assert (again.before, again.after, again.changed) == (head_revision(), head_revision(), False)
    assert store.current_revision() == head_revision()
    store.close()


def test_downgrading_to_base_removes_every_table(empty_url: str, engine: sa.Engine) -> None:
    migrate(empty_url)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}


def test_a_database_from_a_newer_version_is_not_touched(empty_url: str, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    store = SqlStore(empty_url)
    with pytest.raises(StoreError, match=r"9999_from_the_future.*newer version"):
        store.migrate()
    store.close()
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}


@pytest.mark.postgres
def test_daemons_starting_together_migrate_once(empty_postgres_url: str) -> None:
    results: list[object] = []

    def migrate() -> None:
        store = SqlStore(empty_postgres_url)
        try:
            results.append(store.migrate().changed)
        except StoreError as exc:
            results.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=str) == [False, False, True]


def test_an_in_memory_sqlite_database_can_be_migrated_and_used() -> None:
    store = SqlStore("sqlite://")
    store.migrate()
    with store.transaction() as uow:
        uow.save_workflow_version("welcome", "v1", "id: welcome")
    with store.transaction() as uow:
        assert uow.get_workflow_version("welcome", "v1") == "id: welcome"
    store.close()


# -- the command line ---------------------------------------------------------------------


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `tidings ARGS...`; its exit code and everything it printed."""
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_db_upgrade_says_what_it_did_and_is_idempotent(empty_url: str, engine: sa.Engine) -> None:
    shown = sa.make_url(empty_url).render_as_string(hide_password=True)
    head = head_revision()
    assert invoke("db", "upgrade", "--database", empty_url) == (
        0,
        f"{shown}: upgraded from an empty database to revision {head}\n",
    )
    assert invoke("db", "upgrade", "--database", empty_url) == (
        0,
        f"{shown}: already at the newest revision {head}; nothing to do\n",
    )
    assert invoke("db", "current", "--database", empty_url) == (
        0,
        f"{shown}: at revision {head}, the newest\n",
    )
    assert set(sa.inspect(engine).get_table_names()) >= STORE_TABLES


def test_db_current_asks_for_an_upgrade_when_not_migrated(
    empty_url: str, engine: sa.Engine
) -> None:
    with engine.connect():
        pass  # the database exists (for SQLite: the file), but has no tables
    shown = sa.make_url(empty_url).render_as_string(hide_password=True)
    assert invoke("db", "current", "--database", empty_url) == (
        1,
        f"{shown}: not migrated; run `tidings db upgrade` to reach {head_revision()}\n",
    )


def test_db_current_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    code, output = invoke("db", "current", "--database", f"sqlite:///{path}")
    assert code == 1
    assert "no database file yet; run `tidings db upgrade`" in output
    assert not path.exists()


def test_db_upgrade_reads_the_database_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "from-env.db"
    code, output = invoke("db", "upgrade", env={"TIDINGS_DATABASE_URL": f"sqlite:///{path}"})
    assert (code, output.startswith(f"sqlite:///{path}: upgraded from an empty")) == (0, True)
    assert path.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://db.example/tidings", "unsupported database 'mysql'"),
        ("not a url", "invalid database URL 'not a url'"),
    ],
)
def test_db_upgrade_refuses_an_unusable_url(url: str, message: str) -> None:
    code, output = invoke("db", "upgrade", "--database", url)
    assert code == 1
    assert output.startswith("error: ") and message in output
