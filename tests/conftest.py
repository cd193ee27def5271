"""Shared fixtures: a PostgreSQL server for the whole run, and `store` over every store kind.

PostgreSQL comes from `TIDINGS_TEST_POSTGRES_URL` (a server where that user may create
databases), else from a throwaway cluster started from the installed binaries. With neither,
PostgreSQL tests skip, or fail when `CI` is set: CI must never pass without them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.postgres import Databases, find_bin_dir, start_cluster
from support.required import missing
from tidings.adapters.memory import MemoryStore
from tidings.adapters.sql.store import SqlStore
from tidings.ports import Store


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Databases]:
    """The test PostgreSQL server's databases, the main one migrated once for the run."""
    url = os.environ.get("TIDINGS_TEST_POSTGRES_URL")
    cluster = None
    if not url:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            reason = (
                "PostgreSQL server binaries (initdb, pg_ctl) not found: install the"
                " 'postgresql' package or set TIDINGS_TEST_POSTGRES_URL"
            )
            missing(reason)
        cluster = start_cluster(bin_dir)
        url = cluster.url()
    databases = Databases(url, prefix=f"tidings_test_{os.getpid()}_")
    try:
        main = SqlStore(databases.url(databases.create(databases.main)))
        main.migrate()
        main.close()
        yield databases
        databases.close()
    finally:
        if cluster is not None:
            cluster.stop()


@pytest.fixture
def postgres_url(postgres_databases: Databases) -> str:
    """A migrated PostgreSQL database with every table empty, for one test."""
    return postgres_databases.empty_main()


@pytest.fixture
def empty_postgres_url(postgres_databases: Databases) -> Iterator[str]:
    """A new PostgreSQL database with no tables at all (for migration tests)."""
    name = postgres_databases.create()
    yield postgres_databases.url(name)
    postgres_databases.drop(name)


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once; each test that wants one gets a copy."""
    path = tmp_path_factory.mktemp("sqlite") / "migrated.db"
    store = SqlStore(f"sqlite:///{path}")
    store.migrate()
    store.close()  # the last connection out checkpoints the WAL into the file
    return path


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty, migrated store of each kind: the same tests run on all three."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite":
        path = tmp_path / "tidings.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
    sql = SqlStore(url)
    yield sql
    sql.close()
