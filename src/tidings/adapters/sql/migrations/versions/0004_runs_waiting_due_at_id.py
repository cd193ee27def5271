"""Waiting runs indexed in the claim's order, due time then id.

The claim takes the earliest due runs ordered by due time, then id. Indexed by due time alone,
a crowd of runs due at the same instant was read and sorted whole at every claim of a batch
(SQLite: a temporary B-tree for the id part of the order), so claiming N such runs cost about
N² / batch rows read; indexed by both, each claim reads its batch. PostgreSQL orders the claim
by `id COLLATE "C"`, so the index's id is in collation "C" there: an index in the database's
own collation (even a C database's, which the planner does not take for "C") would leave the
sort in the plan.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Written by hand, like 0001: a migration never imports the current table classes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_WAITING = "status = 'waiting'"


def upgrade() -> None:
    """Replace `ix_runs_waiting_due_at` by `ix_runs_waiting_due_at_id`."""
    waiting = sa.text(_WAITING)
    op.create_index(
        "ix_runs_waiting_due_at_id",
        "runs",
        ["due_at", "id"],
        postgresql_where=waiting,
        sqlite_where=waiting,
        postgresql_ops={"id": 'COLLATE "C"'},
    )
    op.drop_index("ix_runs_waiting_due_at", table_name="runs")


def downgrade() -> None:
    """Back to `ix_runs_waiting_due_at`, by due time alone."""
    waiting = sa.text(_WAITING)
    op.create_index(
        "ix_runs_waiting_due_at", "runs", ["due_at"], postgresql_where=waiting, sqlite_where=waiting
    )
    op.drop_index("ix_runs_waiting_due_at_id", table_name="runs")
