"""`tidings keys`: a key is printed once, stored only as a hash, listed by id, revoked by id."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.sql.keys import SqlKeyStore
from tidings.cli.main import app
from tidings.model.keys import KeyKind, hash_key


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner(env=env).invoke(app, ["keys", *args])
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    code, out, err = _run(["create", "--kind", "tracker", "--name", "shop site", "--database", url])
    assert code == 0
    secret = out.strip()
    assert secret.startswith("tdg_trk_") and "\n" not in secret
    assert "Store it now: it is not shown again." in err
    # The database holds the hash, not the key
    assert secret.encode() not in (tmp_path / "keys.db").read_bytes()
    store = SqlKeyStore(url)
    checker = KeyChecker(lookup=store)
    try:
        key = checker.check(secret, (KeyKind.tracker,))
        assert key is not None and (key.kind, key.name) == (KeyKind.tracker, "shop site")
        assert checker.check(secret, (KeyKind.api,)) is None
    finally:
        store.close()


def test_list_and_revoke(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    _, secret, _ = _run(["create", "--kind", "api", "--name", "backend", "--database", url])
    store = SqlKeyStore(url)
    try:
        [key] = store.list()
    finally:
        store.close()
    code, listed, _ = _run(
        ["list", "--database", url], env={"TIDINGS_API_KEYS": "a,b", "TIDINGS_TRACKER_KEYS": ""}
    )
    assert code == 0
    assert key.id in listed and "api" in listed and "backend" in listed and "active" in listed
    assert secret.strip() not in listed
    assert "plus 2 api key(s) from TIDINGS_API_KEYS and 0 tracker key(s)" in listed
    code, out, _ = _run(["revoke", key.id, "--database", url])
    assert (code, out) == (0, f"revoked api key {key.id} (backend)\n")
    store = SqlKeyStore(url)
    try:
        assert store.find_key(hash_key(secret.strip())) is None
        assert store.list()[0].revoked_at is not None
    finally:
        store.close()
    _, listed_after, _ = _run(["list", "--database", url])
    assert "revoked 20" in listed_after


def test_revoke_unknown_key_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    code, out, err = _run(["revoke", "key_nope", "--database", url])
    assert (code, out, err) == (1, "", "error: no key with id 'key_nope'\n")


def test_created_at_is_now(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    before = datetime.now(UTC)
    _run(["create", "--kind", "api", "--name", "x", "--database", url])
    store = SqlKeyStore(url)
    try:
        [key] = store.list()
    finally:
        store.close()
    assert key.created_at is not None and key.created_at >= before.replace(microsecond=0)
