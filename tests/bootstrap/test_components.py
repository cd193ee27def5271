"""The composition root: without `secret_key`, each database gets its own link-signing secret,
made once and kept, and the daemon says so without ever logging it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from support.daemon import T0
from tidings.adapters.clock import ManualClock
from tidings.adapters.sql.engine import create_engine
from tidings.bootstrap.components import Components, build_components
from tidings.model.contacts import Channel
from tidings.settings import load_settings


def _deployment(root: Path, **environ: str) -> Components:
    root.mkdir(exist_ok=True)
    settings = load_settings(
        None,
        {
            "TIDINGS_DATABASE_URL": f"sqlite:///{root / 'tidings.db'}",
            "TIDINGS_WORKFLOWS_DIR": str(root),
            "TIDINGS_TEMPLATES_DIR": str(root),
            "TIDINGS_OUTBOX_DIR": str(root / "outbox"),
            **environ,
        },
    )
    return build_components(settings, clock=ManualClock(T0))


def _stored_secret(root: Path) -> str:
    engine = create_engine(f"sqlite:///{root / 'tidings.db'}")
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT value FROM instance_secrets")).scalar_one())
    finally:
        engine.dispose()


def test_two_default_deployments_do_not_share_a_secret(tmp_path: Path) -> None:
    a, b = _deployment(tmp_path / "a"), _deployment(tmp_path / "b")
    try:
        token = a.tokens.create("contact-1", Channel.email)
        assert a.tokens.verify(token) is not None
        # A link of one deployment is forged for the other
        assert b.tokens.verify(token) is None
        assert token != b.tokens.create("contact-1", Channel.email)
    finally:
        a.close()
        b.close()


def test_the_generated_secret_survives_a_restart_and_is_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tidings.daemon")
    first = _deployment(tmp_path)
    token = first.tokens.create("contact-1", Channel.email)
    first.close()
    again = _deployment(tmp_path)
    try:
        assert again.tokens.verify(token) is not None
    finally:
        again.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "generated now and stored in this database" in warnings[0]
    assert "stored earlier in this database" in warnings[1]
    assert all("TIDINGS_SECRET_KEY" in w for w in warnings)
    assert _stored_secret(tmp_path) not in caplog.text


def test_a_configured_secret_is_used_and_nothing_is_generated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tidings.daemon")
    a = _deployment(tmp_path / "a", TIDINGS_SECRET_KEY="shared-secret-1234")
    b = _deployment(tmp_path / "b", TIDINGS_SECRET_KEY="shared-secret-1234")
    try:
        assert b.tokens.verify(a.tokens.create("contact-1", Channel.email)) is not None
    finally:
        a.close()
        b.close()
    assert caplog.records == []
