"""A throwaway PostgreSQL cluster for the tests, started from the installed server binaries.

`initdb` refuses to run as root, so when the tests run as root the cluster is created and run
by the `postgres` OS user, in a temporary directory handed over to it. The server listens only
on a Unix socket inside that directory (on a free port number, which names the socket), with
durability switched off: these databases live for one test run.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "listen_addresses=''",
    "max_connections=100",
)


def find_bin_dir() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`: on PATH, else the newest under /usr/lib."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A running throwaway cluster; `url(db)` names one of its databases."""

    bin_dir: Path
    base: Path
    port: int
    as_postgres_user: bool

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.base / "data"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for `database`, over the cluster's Unix socket."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.base}&port={self.port}"

    def run(self, program: str, args: Sequence[str]) -> None:
        """Run one of the server programs (as the postgres user when we are root)."""
        command = [str(self.bin_dir / program), *args]
        if self.as_postgres_user:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.base / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{tail}"
            )

    def stop(self) -> None:
        """Stop the server at once and delete everything it wrote."""
        try:
            self.run("pg_ctl", ["stop", "-D", str(self.data_dir), "-m", "immediate", "-w"])
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start_cluster(bin_dir: Path) -> Cluster:
    """initdb a new cluster in a temporary directory and start it."""
    as_postgres_user = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
    if as_postgres_user:
        owner = pwd.getpwnam("postgres")
        os.chown(base, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(
        bin_dir=bin_dir, base=base, port=_free_port(), as_postgres_user=as_postgres_user
    )
    try:
        cluster.run(
            "initdb",
            ["-D", str(cluster.data_dir), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
             "--no-locale", "--no-sync"],
        )  # fmt: skip
        options = " ".join(f"-c {setting}" for setting in _SETTINGS)
        options += f" -c port={cluster.port} -c unix_socket_directories={base}"
        cluster.run(
            "pg_ctl",
            ["start", "-D", str(cluster.data_dir), "-w", "-l", str(base / "server.log"),
             "-o", options],
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return cluster


class Databases:
    """Databases on the test server: one migrated database emptied before each test (a few
    milliseconds, where a CREATE DATABASE takes hundreds), and empty ones on demand."""

    def __init__(self, admin_url: str, prefix: str) -> None:
        self._admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._admin_url = sa.make_url(admin_url)
        self._prefix = prefix
        self._count = 0
        self.main = f"{prefix}main"
        self._main: sa.Engine | None = None

    def url(self, database: str) -> str:
        """The URL of one database on the same server."""
        return self._admin_url.set(database=database).render_as_string(hide_password=False)

    def create(self, name: str | None = None) -> str:
        """A new empty database; returns its name."""
        self._count += 1
        name = name or f"{self._prefix}{self._count}"
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return name

    def empty_main(self) -> str:
        """Empty every table of the main database (not its schema version); returns its URL."""
        if self._main is None:
            self._main = sa.create_engine(self.url(self.main), poolclass=NullPool)
        with self._main.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            tables = conn.exec_driver_sql(
                "SELECT quote_ident(tablename) FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            ).scalars()
            # DELETE, not TRUNCATE: on tables this small it is ten times faster.
            for table in list(tables):
                conn.exec_driver_sql(f"DELETE FROM {table}")
            conn.exec_driver_sql(
                "SELECT setval(oid, 1, false) FROM pg_class"
                " WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace"
            )
        return self.url(self.main)

    def drop(self, name: str) -> None:
        """Drop a database, closing whatever connections a failed test left open."""
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the main database and release the engines."""
        if self._main is not None:
            self._main.dispose()
        self.drop(self.main)
        self._admin.dispose()
