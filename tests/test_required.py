"""A test whose program is missing skips on a laptop but fails under CI (`CI` set)."""

from __future__ import annotations

import pytest

from support.required import program


def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.fail.Exception, match=r"node not found.*'nodejs'.*CI is set"):
        program("node", "nodejs")


def test_a_missing_program_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pytest.skip.Exception, match="node not found"):
        program("node", "nodejs")
