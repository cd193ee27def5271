"""The outbox's delivery-state update on the driver's cursor writes what SQLAlchemy's own
UPDATE of the same values writes, column for column, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from support.messages import T0, make_message
from tidings.adapters.sql import mapping
from tidings.adapters.sql.store import SqlStore, SqlUnitOfWork
from tidings.adapters.sql.tables import messages
from tidings.model.messages import Message, MessageStatus

LATER = T0 + timedelta(minutes=7, microseconds=123456)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    """An empty, migrated SQL store of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "tidings.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = SqlStore(url)
    yield store
    store.close()


def sqlalchemy_save(uow: SqlUnitOfWork, message: Message) -> None:
    """The UPDATE `save_message` made before it ran on the driver's cursor."""
    values: dict[str, Any] = mapping.delivery_values(message)
    if message.status is not MessageStatus.sending:
        values["lease_until"] = None
    connection: sa.Connection = uow._conn  # the reference needs it
    connection.execute(sa.update(messages).where(messages.c.key == message.key).values(values))


@pytest.mark.parametrize(
    "state",
    [
        {"status": MessageStatus.sent, "attempts": 1, "sent_at": LATER, "provider_id": "<r@x>"},
        {
            "status": MessageStatus.pending,
            "attempts": 2,
            "last_error": "451 4.7.1 Réessayez plus tard",
            "next_attempt_at": LATER,
        },
        {"status": MessageStatus.failed, "attempts": 3, "last_error": "550 no such user"},
        {"status": MessageStatus.sending, "attempts": 1},  # its lease is kept
    ],
    ids=["sent", "retrying", "failed", "sending"],
)
def test_a_saved_delivery_state_is_the_row_sqlalchemy_writes(
    sql_store: SqlStore, state: dict[str, Any]
) -> None:
    store = sql_store
    ours, theirs = make_message(1), make_message(2, to="user1@example.org")
    with store.transaction() as uow:
        uow.add_messages([ours, theirs])
        uow.claim_messages(T0, 2, timedelta(minutes=5))
    with store.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        uow.save_message(ours.model_copy(update=state))
        sqlalchemy_save(uow, theirs.model_copy(update=state))
    with store.transaction() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        raw = sa.text("SELECT * FROM messages ORDER BY key")
        rows = [dict(row) for row in uow._conn.execute(raw).mappings()]
    different = {"key", "run_id", "contact_id", "subject", "text", "html"}
    assert [{k: v for k, v in row.items() if k not in different} for row in rows] == [
        {k: v for k, v in rows[1].items() if k not in different}
    ] * 2
    assert rows[0]["status"] == state["status"].value
