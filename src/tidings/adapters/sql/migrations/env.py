"""Alembic environment: migrate over the connection `tidings.adapters.sql.migrate` passes in.

Run from code only (`SqlStore.migrate()`, `tidings db upgrade`); there is no alembic.ini. The
caller's transaction is the migration's transaction, so a failed upgrade leaves nothing behind.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from tidings.adapters.sql import keys  # noqa: F401  (puts api_keys on the metadata)
from tidings.adapters.sql.tables import metadata


def run_migrations() -> None:
    """Run the pending migrations on the connection in the Alembic config's attributes."""
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, sa.Connection):
        raise RuntimeError("run Tidings migrations with `tidings db upgrade`, not the alembic CLI")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite's DDL is transactional too; Alembic assumes otherwise by default.
        transactional_ddl=True,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
