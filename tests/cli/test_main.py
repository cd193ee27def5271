"""The `tidings` app: its commands are listed, and --version answers."""

from __future__ import annotations

from typer.testing import CliRunner

from tidings import __version__
from tidings.cli.main import app


def test_version():
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout == f"tidings {__version__}\n"


def test_help_lists_the_commands():
    result = CliRunner(env={"COLUMNS": "120"}).invoke(app, ["--help"])

    assert result.exit_code == 0
    assert "validate" in result.stdout
    assert "schema" in result.stdout
