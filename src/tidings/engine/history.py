"""A contact's event history as conditions see it: `has_event`, `count_events`, `last_event`.

The history is the contact's stored events plus the event being processed (counted once even
when the store already holds it), as of `now`: events dated after `now` are not yet history
(this matters when `simulate` replays a log whose events are all stored up front). The event
being processed always counts, even when its client clock runs slightly ahead.

`since` is a datetime or an ISO 8601 text (inclusive); `within` is a duration such as `7d`,
counted back from `now` (inclusive). Given both, an event must satisfy both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from tidings.model.durations import parse_duration
from tidings.model.events import Event


class History:
    """The events one decision may look back on."""

    def __init__(self, events: Sequence[Event], now: datetime, current: Event | None = None):
        seen: set[str] = set()
        kept: list[Event] = []
        for event in events:
            if event.id in seen or (event.occurred_at > now and event is not current):
                continue
            if current is not None and event.id == current.id:
                continue
            seen.add(event.id)
            kept.append(event)
        if current is not None:
            kept.append(current)
        self._events = sorted(kept, key=lambda e: e.occurred_at)
        self._now = now

    def events(self, name: str, since: Any = None, within: Any = None) -> list[Event]:
        """The events of this name in the window, oldest first."""
        earliest = _earliest(self._now, since, within)
        return [
            e
            for e in self._events
            if e.name == name and (earliest is None or e.occurred_at >= earliest)
        ]

    def has_event(self, name: str, since: Any = None, within: Any = None) -> bool:
        """Whether the contact did `name` (since a time and/or within a duration of now)."""
        return bool(self.events(name, since, within))

    def count_events(self, name: str, since: Any = None, within: Any = None) -> int:
        """How many times the contact did `name` (since a time and/or within a duration)."""
        return len(self.events(name, since, within))

    def last_event(self, name: str) -> dict[str, Any] | None:
        """The latest event of this name as templates see events, or None."""
        found = self.events(name)
        return found[-1].template_view() if found else None

    def helpers(self) -> dict[str, Callable[..., Any]]:
        """The functions put in condition and template contexts."""
        return {
            "has_event": self.has_event,
            "count_events": self.count_events,
            "last_event": self.last_event,
        }


def _earliest(now: datetime, since: Any, within: Any) -> datetime | None:
    """The start of the window a history query looks at (None: all of it)."""
    bounds: list[datetime] = []
    if since is not None:
        bounds.append(_as_instant(since))
    if within is not None:
        span = parse_duration(within)
        bounds.append(now - abs(span))
    return max(bounds) if bounds else None


def _as_instant(value: Any) -> datetime:
    """A datetime from what a condition may pass as `since`; naive values are UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"since: expected a date-time, found {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
