"""Clocks: the system clock answers in UTC; the manual clock moves only when told."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tidings.adapters.clock import ManualClock, SystemClock, as_utc

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


def test_the_system_clock_answers_in_utc() -> None:
    now = SystemClock().now()
    assert now.tzinfo is UTC


def test_a_manual_clock_stands_still_until_advanced() -> None:
    clock = ManualClock(T0)
    assert clock.now() == T0
    assert clock.now() == T0
    assert clock.advance(timedelta(minutes=90)) == T0 + timedelta(minutes=90)
    assert clock.now() == T0 + timedelta(minutes=90)


def test_a_manual_clock_never_advances_backwards() -> None:
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="cannot go backwards"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == T0


def test_a_manual_clock_can_be_set_to_any_instant_and_keeps_it_in_utc() -> None:
    clock = ManualClock(datetime(2024, 5, 1, 18, 0, tzinfo=TOKYO))
    assert (clock.now(), clock.now().tzinfo) == (T0, UTC)
    earlier = clock.set(datetime(2024, 4, 1, 9, 0, tzinfo=TOKYO))
    assert earlier == clock.now() == datetime(2024, 4, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (datetime(2024, 5, 1, 18, 0, tzinfo=TOKYO), T0),
        (datetime(2024, 4, 30, 23, 0, tzinfo=timezone(timedelta(hours=-10))), T0),
        (T0, T0),
    ],
)
def test_as_utc_keeps_the_instant(given: datetime, expected: datetime) -> None:
    converted = as_utc(given)
    assert (converted, converted.tzinfo) == (expected, UTC)


def test_as_utc_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="naive 2024-05-01T09:00:00"):
        as_utc(datetime(2024, 5, 1, 9, 0))
    with pytest.raises(ValueError, match="naive"):
        ManualClock(datetime(2024, 5, 1, 9, 0))
