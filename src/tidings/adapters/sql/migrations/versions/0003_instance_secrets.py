"""Instance secrets: what a deployment generates for itself once (the unsubscribe-link signing
key when `secret_key` is not configured), shared by every daemon on the database.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

Written by hand, like 0001: a migration never imports the current table classes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create `instance_secrets`."""
    op.create_table(
        "instance_secrets",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_instance_secrets"),
    )


def downgrade() -> None:
    """Drop `instance_secrets`."""
    op.drop_table("instance_secrets")
