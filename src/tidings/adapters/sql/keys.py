"""API keys in SQL: the `api_keys` table (hashes only) and the queries `tidings keys` and the
HTTP key checker use; and `instance_secrets`, the secrets a deployment generates for itself
(the unsubscribe-link signing key when none is configured). Its own small engine: keys are
read rarely and never inside an event transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field

from tidings.adapters.sql.engine import create_engine, database_url
from tidings.adapters.sql.statements import insert_ignoring
from tidings.adapters.sql.tables import Row, UTCDateTime
from tidings.errors import StoreError
from tidings.model.keys import ApiKey, KeyKind, hash_key, new_key_id, new_secret

T = TypeVar("T")


class ApiKeyRow(Row, table=True):
    """One key: its kind, a name for people, the SHA-256 of the secret, and when revoked."""

    __tablename__ = "api_keys"

    id: str = Field(sa_column=sa.Column(sa.Text(), primary_key=True))
    kind: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    name: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    key_hash: str = Field(sa_column=sa.Column(sa.Text(), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    revoked_at: datetime | None = Field(sa_column=sa.Column(UTCDateTime(), nullable=True))


class InstanceSecretRow(Row, table=True):
    """A secret this database's deployment generated once and shares across its daemons."""

    __tablename__ = "instance_secrets"

    name: str = Field(sa_column=sa.Column(sa.Text(), primary_key=True))
    value: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


_k = Row.metadata.tables["api_keys"]
_s = Row.metadata.tables["instance_secrets"]


def _key(row: sa.RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        kind=KeyKind(row["kind"]),
        name=row["name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class SqlKeyStore:
    """Create, list, revoke and look up keys in the database at `url` (migrated beforehand)."""

    def __init__(self, url: str) -> None:
        self._url = database_url(url).render_as_string(hide_password=True)
        self._engine = create_engine(url)

    def create(self, kind: KeyKind, name: str, *, now: datetime) -> tuple[ApiKey, str]:
        """A new key; returns it and its secret, which is not kept and cannot be shown again."""
        secret = new_secret(kind)
        key = ApiKey(id=new_key_id(), kind=kind, name=name, created_at=now)
        values = {
            "id": key.id,
            "kind": key.kind.value,
            "name": key.name,
            "key_hash": hash_key(secret),
            "created_at": now,
            "revoked_at": None,
        }
        self._run(lambda conn: conn.execute(sa.insert(_k).values(values)))
        return key, secret

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        stmt = sa.select(_k).order_by(_k.c.created_at, _k.c.id)
        return self._run(lambda conn: [_key(r) for r in conn.execute(stmt).mappings()])

    def revoke(self, key_id: str, *, now: datetime) -> ApiKey | None:
        """Revoke a key by id (at once for new requests); None when there is no such key."""
        stmt = (
            sa.update(_k).where(_k.c.id == key_id, _k.c.revoked_at.is_(None)).values(revoked_at=now)
        )
        self._run(lambda conn: conn.execute(stmt))
        found = self._run(
            lambda conn: conn.execute(sa.select(_k).where(_k.c.id == key_id)).mappings().first()
        )
        return _key(found) if found is not None else None

    def find_key(self, key_hash: str) -> ApiKey | None:
        """The active key with this hash, if any."""
        stmt = sa.select(_k).where(_k.c.key_hash == key_hash, _k.c.revoked_at.is_(None))
        row = self._run(lambda conn: conn.execute(stmt).mappings().first())
        return _key(row) if row is not None else None

    def instance_secret(
        self, name: str, *, make: Callable[[], str], now: datetime
    ) -> tuple[str, bool]:
        """The secret stored under `name`, made and stored first if there is none; and whether
        it was made now. Daemons starting together on one database all get the first one."""
        postgres = self._engine.dialect.name == "postgresql"
        insert = insert_ignoring(postgres, _s, ("name",), "name")
        values = {"name": name, "value": make(), "created_at": now}
        made = self._run(lambda conn: conn.execute(insert, values).first() is not None)
        stored = self._run(
            lambda conn: conn.execute(sa.select(_s.c.value).where(_s.c.name == name)).scalar_one()
        )
        return stored, made

    def close(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    def _run(self, work: Callable[[sa.Connection], T]) -> T:
        try:
            with self._engine.begin() as connection:
                return work(connection)
        except SQLAlchemyError as exc:
            raise StoreError(f"{self._url}: api keys: {exc}") from exc
