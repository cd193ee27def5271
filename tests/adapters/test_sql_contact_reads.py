"""The group writer's contact statements on SQLite run on the driver's cursor and read exactly
the rows SQLAlchemy read; on PostgreSQL the reads still go through SQLAlchemy (psycopg's values
need no conversion, and the driver path is not worth its own twins there). The answers of the
methods are the store contract's (`test_store_contact_batch.py`, on all three stores)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa

from support.records import make_contact
from tidings.adapters.sql import contacts as sql_contacts
from tidings.adapters.sql import mapping
from tidings.adapters.sql.statements import Queries
from tidings.adapters.sql.store import SqlStore
from tidings.model.events import IdentifierKind
from tidings.ports import ContactBatch

EMAIL = IdentifierKind.email_id
EXT = IdentifierKind.ext_id
PHONE = IdentifierKind.phone_id
PARIS = timezone(timedelta(hours=2))


@pytest.fixture
def sqlite_store(tmp_path: Path, migrated_sqlite_file: Path) -> Iterator[SqlStore]:
    path = tmp_path / "tidings.db"
    shutil.copyfile(migrated_sqlite_file, path)
    store = SqlStore(f"sqlite:///{path}")
    yield store
    store.close()


def _engine(store: SqlStore) -> sa.Engine:
    return cast(sa.Engine, store._engine)


CONTACTS = [
    make_contact(
        1,
        identifiers={EMAIL: "one@example.org", EXT: "c1"},
        created_at=datetime(2024, 5, 1, 9, 0, 0, 7, tzinfo=UTC),
        updated_at=datetime(2024, 5, 1, 11, 0, 0, 123456, tzinfo=PARIS),
    ),
    make_contact(2, identifiers={PHONE: "+33600000002"}, attributes={"VIP": True, "N": 1.5}),
    make_contact(3, identifiers={}, attributes={"é": [1, None, {"x": "y"}]}),
]


def test_contact_reads_on_the_driver_give_sqlalchemy_s_rows(sqlite_store: SqlStore) -> None:
    with sqlite_store.transaction() as uow:
        cast(ContactBatch, uow).save_contacts(CONTACTS)
    reads: list[tuple[sa.Select[Any], dict[str, Any]]] = [
        (sql_contacts._OWNERS_BY_VALUE, {"kind": "email_id", "values": ["one@example.org", "x"]}),
        (sql_contacts._OWNERS_BY_VALUE, {"kind": "phone_id", "values": []}),
        (sql_contacts._HELD_BY, {"ids": ["contact-1", "contact-2", "contact-3"]}),
        (sql_contacts._in_ids(False), {"ids": ["contact-3", "contact-1", "contact-9"]}),
        (sql_contacts._by_id(False), {"contact_id": "contact-3"}),
        (
            sql_contacts._by_identifiers(False, 2),
            {"kind_0": "ext_id", "value_0": "c1", "kind_1": "phone_id", "value_1": "+33600000002"},
        ),
    ]
    with _engine(sqlite_store).begin() as connection:
        for statement, values in reads:
            theirs = [dict(row) for row in connection.execute(statement, values).mappings()]
            ours = list(Queries(connection)._select_rows(statement, values))
            assert ours == theirs
            assert [list(row) for row in ours] == [list(row) for row in theirs]
        assert len(list(Queries(connection)._select_rows(*reads[2]))) == 3


def test_a_group_s_contact_work_runs_no_sqlalchemy_statement_on_sqlite(
    sqlite_store: SqlStore,
) -> None:
    executed: list[str] = []

    def watch(*args: Any) -> None:
        executed.append(args[2])

    sa.event.listen(_engine(sqlite_store), "before_cursor_execute", watch)
    with sqlite_store.transaction() as uow:
        batch = cast(ContactBatch, uow)
        executed.clear()  # BEGIN IMMEDIATE
        batch.save_contacts(CONTACTS)
        moved = make_contact(2, identifiers={EXT: "c2"}, attributes={})
        freed = make_contact(4, identifiers={PHONE: "+33600000002"})
        batch.save_contacts([moved, freed])
        found = batch.find_contacts_many([(EMAIL, "one@example.org"), (EXT, "c2")], ["contact-3"])
        assert [c.id for c in found] == ["contact-1", "contact-2", "contact-3"]
        assert uow.get_contact("contact-4") == freed
        assert uow.find_contacts({PHONE: "+33600000002"}) == [freed]
        assert uow.get_contacts(["contact-1", "contact-4"]).keys() == {"contact-1", "contact-4"}
        # Only the identifier given up is dropped through SQLAlchemy (rare: a contact moving).
        assert [sql.split()[0] for sql in executed] == ["DELETE"]


def test_identifiers_read_back_in_lookup_order_and_an_unknown_kind_is_refused() -> None:
    row = mapping.contact_values(CONTACTS[0]) | {"unsubscribed": []}
    read = mapping.contact_from_row(row, {"phone_id": "+331", "ext_id": "c1", "email_id": "a@b.c"})
    assert list(read.identifiers.items()) == [(EMAIL, "a@b.c"), (EXT, "c1"), (PHONE, "+331")]
    with pytest.raises(ValueError, match="'fax_id' is not a valid IdentifierKind"):
        mapping.contact_from_row(row, {"email_id": "a@b.c", "fax_id": "1"})
