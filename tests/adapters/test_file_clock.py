"""The test-only file clock: the time written in a file, moved by rewriting it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tidings.adapters.file_clock import FileClock, write_clock_file
from tidings.errors import ConfigError

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def test_the_clock_reads_the_time_in_the_file_each_time(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    write_clock_file(path, T0)
    clock = FileClock(path)
    first = clock.now()

    write_clock_file(path, (T0 + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))))

    assert (first, clock.now()) == (T0, T0 + timedelta(hours=1))
    assert clock.now().tzinfo is UTC


@pytest.mark.parametrize("content", ["", "not a time", "2030-01-01T08:00:00+00:00"])
def test_an_unreadable_or_earlier_time_keeps_the_last_good_one(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "clock"
    write_clock_file(path, T0)
    clock = FileClock(path)

    path.write_text(content, encoding="utf-8")

    assert clock.now() == T0


@pytest.mark.parametrize("content", [None, "", "2030-01-01T09:00:00"])
def test_a_clock_file_must_hold_an_aware_time_at_start(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "clock"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match="ISO 8601 time with an offset"):
        FileClock(path)


def test_writing_a_naive_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="naive"):
        write_clock_file(tmp_path / "clock", datetime(2030, 1, 1))
    assert list(tmp_path.iterdir()) == []
