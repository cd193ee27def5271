"""`instance_secrets`: a secret is made once per database, then the same one is read back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tidings.adapters.sql.keys import SqlKeyStore

NOW = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def key_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlKeyStore]:
    if request.param == "sqlite":
        path = tmp_path / "tidings.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_file"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = SqlKeyStore(url)
    yield store
    store.close()


def test_a_secret_is_made_once_and_then_read_back(key_store: SqlKeyStore) -> None:
    made = key_store.instance_secret("consent", make=lambda: "first-secret", now=NOW)
    again = key_store.instance_secret("consent", make=lambda: "second-secret", now=NOW)
    other = key_store.instance_secret("other", make=lambda: "other-secret", now=NOW)
    assert made == ("first-secret", True)
    assert again == ("first-secret", False)
    assert other == ("other-secret", True)
