"""Outbox messages indexed in the claim's order: status, due time, then key.

The delivery claim takes the earliest due pending messages ordered by due time, then key.
Indexed by (status, due_at) alone, every claim read all the due messages and sorted them (SQLite:
a temporary B-tree for the order), so a backlog cost each claim of 100 about 5 ms at 1,000 due and
32 ms at 30,000; indexed with the key as well, the claim of pending messages reads its batch in
index order. PostgreSQL orders the claim by `key COLLATE "C"`, so the index's key is in collation
"C" there (see 0004 for why the database's own collation would not do).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Written by hand, like 0001: a migration never imports the current table classes.
"""

from __future__ import annotations

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Replace `ix_messages_status_due_at` by `ix_messages_status_due_at_key`."""
    op.create_index(
        "ix_messages_status_due_at_key",
        "messages",
        ["status", "due_at", "key"],
        postgresql_ops={"key": 'COLLATE "C"'},
    )
    op.drop_index("ix_messages_status_due_at", table_name="messages")


def downgrade() -> None:
    """Back to `ix_messages_status_due_at`, without the key."""
    op.create_index("ix_messages_status_due_at", "messages", ["status", "due_at"])
    op.drop_index("ix_messages_status_due_at_key", table_name="messages")
