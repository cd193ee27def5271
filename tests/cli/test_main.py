"""The `tidings` app: its commands are listed, and --version answers."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tidings import __version__
from tidings.cli.main import app, main, settle_gc


@pytest.fixture
def gc_restored() -> Iterator[None]:
    """The collector as it was: the test process must not keep a command's settings."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_version():
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout == f"tidings {__version__}\n"


def test_help_lists_the_commands():
    result = CliRunner(env={"COLUMNS": "120"}).invoke(app, ["--help"])

    assert result.exit_code == 0
    assert "validate" in result.stdout
    assert "schema" in result.stdout


def test_the_console_script_settles_the_collector_before_the_command(
    gc_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[tuple[int, int, int], int]] = []
    monkeypatch.setattr(
        "tidings.cli.main.app", lambda: seen.append((gc.get_threshold(), gc.get_freeze_count()))
    )
    gc.set_threshold(700, 10, 10)

    main()

    [(threshold, frozen)] = seen
    assert threshold == (50_000, 10, 10)
    assert frozen > 0  # what the imports built is left out of every collection


def test_a_higher_young_threshold_is_kept(gc_restored: None) -> None:
    gc.set_threshold(100_000, 5, 7)

    settle_gc()

    assert gc.get_threshold() == (100_000, 5, 7)
