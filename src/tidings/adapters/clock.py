"""Clocks: the system clock for the daemon, a hand-driven one for tests, `simulate` and previews.

Services never read the time themselves; they ask the `Clock` they were given. Every time a
clock returns is timezone-aware UTC, and `as_utc` is the one conversion adapters use at their
boundary so that a store hands back UTC whatever offset it was given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def as_utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused (its meaning would be a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, found naive {value.isoformat()}")
    return value.astimezone(UTC)


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: `advance` it, or `set` it."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> datetime:
        """The time this clock was last set or advanced to (UTC)."""
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by `delta` (never backwards) and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"a clock cannot go backwards (advance by {delta})")
        self._now += delta
        return self._now

    def set(self, when: datetime) -> datetime:
        """Jump to `when` (any offset; kept in UTC) and return it; earlier times are allowed."""
        # `simulate` replays logs whose first event may predate the clock's start, so jumping
        # back is the caller's decision; `advance` stays monotonic for the common case.
        self._now = as_utc(when)
        return self._now
