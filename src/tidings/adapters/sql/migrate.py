"""Schema migrations, run from code: Alembic with a Config built here, no alembic.ini needed.

The migration scripts ship inside the package (`migrations/`), so an installed Tidings can
migrate its own database. On PostgreSQL an advisory lock serialises concurrent upgrades (several
daemons starting at once); SQLite's `BEGIN IMMEDIATE` does the same there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from tidings.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
# Any fixed 64-bit number: the key of the advisory lock held while upgrading.
_UPGRADE_LOCK = 0x7469_6469_6E67_73  # "tidings"


@dataclass(frozen=True)
class Migration:
    """What an upgrade did: the revision before (None: empty database) and after."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        """True when the upgrade applied at least one migration."""
        return self.before != self.after


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for Tidings' migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of Tidings knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # an installation that lost its migration scripts
        raise StoreError(f"no migrations found in {MIGRATIONS}")
    return head


def is_known_revision(revision: str) -> bool:
    """True when this version of Tidings has a migration script for `revision`."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return any(script.revision == revision for script in scripts.walk_revisions())


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at (None: never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine) -> Migration:
    """Upgrade the database to the newest revision; a no-op when it is already there."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_UPGRADE_LOCK)))
        before = current_revision(connection)
        if before is not None and not is_known_revision(before):
            raise StoreError(
                f"the database is at revision {before!r}, which this version of Tidings does"
                " not know: it was migrated by a newer version"
            )
        command.upgrade(alembic_config(connection), "head")
        return Migration(before=before, after=head_revision())
