"""A contact's event history as conditions see it: `has_event`, `count_events`, `last_event`.

The history is the contact's stored events plus the event being processed (counted once even
when the store already holds it), as of `now`: events dated after `now` are not yet history
(this matters when `simulate` replays a log whose events are all stored up front). The event
being processed always counts, even when its client clock runs slightly ahead.

`since` is a datetime or an ISO 8601 text (inclusive); `within` is a duration such as `7d`,
counted back from `now` (inclusive). Given both, an event must satisfy both. `where` is a
mapping of property names to values that an event's properties must all equal; a run key is
text, so a text value also matches a number whose text it is (`where={"product_id": run.key}`
with a numeric `product_id`). The engine loads a contact's history once per decision, so the
filters run here, over that one list, never as a store query per condition.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import attrgetter
from typing import Any

from tidings.compile.sandbox import ContextHelpers
from tidings.model.durations import parse_duration
from tidings.model.events import Event


class History(ContextHelpers):
    """The events one decision may look back on (its public methods are the context's history
    helpers: safe, context-free, changing nothing)."""

    def __init__(self, events: Sequence[Event], now: datetime, current: Event | None = None):
        # The current event's id counts as seen: a stored copy of it is left out, and it goes
        # in once, whatever its date.
        seen: set[str] = set() if current is None else {current.id}
        kept: list[Event] = []
        for event in events:
            event_id = event.id
            if event_id in seen or event.occurred_at > now:
                continue
            seen.add(event_id)
            kept.append(event)
        if current is not None:
            kept.append(current)
        kept.sort(key=_occurred_at)  # stable: events of one time keep their order
        self._events = kept
        self._now = now
        self._by_name: dict[str, list[Event]] = {}  # the events of each name asked for

    def events(
        self, name: str, *, since: Any = None, within: Any = None, where: Any = None
    ) -> list[Event]:
        """The events of this name in the window whose properties match `where`, oldest first."""
        earliest = _earliest(self._now, since, within)
        wanted = _wanted(where)
        named = self._named(name)
        # By time already, so the window is a tail: find where it starts (a copy, either way).
        start = 0 if earliest is None else bisect_left(named, earliest, key=_occurred_at)
        if not wanted:
            return named[start:]
        if len(wanted) == 1:  # the usual `where={"product_id": ...}`: _matches, inlined
            [(key, expected)] = wanted.items()
            return [
                e
                for e in named[start:]
                if key in (properties := e.properties)
                and (
                    (value := properties[key]) == expected
                    or (type(value) is not type(expected) and _same(value, expected))
                )
            ]
        return [e for e in named[start:] if _matches(e.properties, wanted)]

    def _named(self, name: str) -> list[Event]:
        """The events of one name, by time; kept for the next query of that name (most
        decisions ask one, so only names asked for are sorted out)."""
        if not isinstance(name, str):  # may not hash, and equals no name anyway
            return [e for e in self._events if e.name == name]
        found = self._by_name.get(name)
        if found is None:
            found = self._by_name[name] = [e for e in self._events if e.name == name]
        return found

    def has_event(
        self, name: str, *, since: Any = None, within: Any = None, where: Any = None
    ) -> bool:
        """Whether the contact did `name` (in the window, with these property values)."""
        return bool(self.events(name, since=since, within=within, where=where))

    def count_events(
        self, name: str, *, since: Any = None, within: Any = None, where: Any = None
    ) -> int:
        """How many times the contact did `name` (in the window, with these property values)."""
        return len(self.events(name, since=since, within=within, where=where))

    def last_event(
        self, name: str, *, since: Any = None, within: Any = None, where: Any = None
    ) -> dict[str, Any] | None:
        """The latest such event as templates see events, or None."""
        found = self.events(name, since=since, within=within, where=where)
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
    if since is None and type(within) is str:  # the usual `within="1d"`
        return now - _span(within)
    bounds: list[datetime] = []
    if since is not None:
        bounds.append(_as_instant(since))
    if within is not None:
        span = parse_duration(within)
        bounds.append(now - abs(span))
    return max(bounds) if bounds else None


@lru_cache(maxsize=256)
def _span(within: str) -> timedelta:
    """How far back a `within` text reaches, remembered (a failure raises afresh each time)."""
    return abs(parse_duration(within))


def _as_instant(value: Any) -> datetime:
    """A datetime from what a condition may pass as `since`; naive values are UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"since: expected a date-time, found {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _wanted(where: Any) -> Mapping[str, Any]:
    """The property filter a history query was given (empty: no filter)."""
    if where is None:
        return {}
    if type(where) is dict or isinstance(where, Mapping):  # a {...} literal is a dict
        for key in where:
            if not isinstance(key, str):
                break
        else:
            return where
    raise ValueError(f"where: expected a mapping of property names to values, found {where!r}")


_occurred_at: Callable[[Event], datetime] = attrgetter("occurred_at")


def _matches(properties: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether every wanted property is present with an equal value."""
    for key, expected in wanted.items():
        if key not in properties:
            return False
        value = properties[key]
        if not (
            value == expected or (type(value) is not type(expected) and _same(value, expected))
        ):
            return False
    return True


def _same(value: Any, expected: Any) -> bool:
    """Equal, or a number and the text it prints as (keys are rendered text). Two values of
    one type that are not == are never the same: callers skip the call for them (most
    events of a `where` are other products, of the same type as the one asked for)."""
    if value == expected:
        return True
    for text, other in ((value, expected), (expected, value)):
        if isinstance(text, str) and isinstance(other, int | float) and not isinstance(other, bool):
            return text == str(other)
    return False
