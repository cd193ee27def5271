"""When a wait is due and when a quiet-hours window ends: pure functions of `now` and a zone.

Decisions, where authors could wonder:
- A duration (`wait: 1d`) is elapsed time: 24 hours later, even across a DST change. Authors
  who mean a wall-clock time write `until: "09:00"`.
- `until` is the next occurrence of that local time strictly after `now` (so a timer that fires
  at 09:00 and waits `until: 09:00` again waits a day, never zero), on one of `weekdays` when
  given.
- A local time that does not exist (the hour skipped when clocks go forward) moves to the first
  valid instant after it: 02:30 on the spring-forward day in Paris is 03:00 CEST.
- A local time that happens twice (the hour repeated when clocks go back) is its first
  occurrence (fold=0), so it fires once, not twice.
- The zone `contact` is the contact's own zone when it has a valid one, else the workflow's
  zone, else UTC. A contact's zone comes from data and may be wrong: that falls back, it never
  fails the run.
- A date (`wait: {date: ...}`) is an ISO 8601 date or date-time; a naive one is a local time in
  the wait's zone; a date alone means midnight. A date already past is due at once.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tidings.model.contacts import Contact
from tidings.model.workflow import WEEKDAYS

CONTACT_ZONE = "contact"
_EVERY_DAY = frozenset(range(7))


def zone_named(name: str | None) -> ZoneInfo | None:
    """The zone of an IANA name, or None when the name is empty or unknown."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def resolve_zone(name: str | None, contact: Contact, workflow_zone: str | None) -> tzinfo:
    """The zone a wait or a quiet-hours window is read in (see the module docstring)."""
    if name and name != CONTACT_ZONE:
        explicit = zone_named(name)
        if explicit is not None:
            return explicit
    elif (own := zone_named(contact.timezone)) is not None:
        return own
    return zone_named(workflow_zone) or UTC


def localize(day: date, at: time, zone: tzinfo) -> datetime:
    """The instant (in UTC) of a local date and time, resolving DST gaps and folds."""
    if type(day) is not date:  # a datetime is a date too: its date is what counts
        day = date(day.year, day.month, day.day)
    return _localized(day, at.replace(tzinfo=None), zone)


LOCALIZED_CACHE = 1024
"""Local (date, time, zone) instants remembered: a send in quiet hours and a `wait: until`
ask for today's and tomorrow's end, the same for every contact in a zone."""


@functools.lru_cache(maxsize=LOCALIZED_CACHE)
def _localized(day: date, at: time, zone: tzinfo) -> datetime:
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        return first.astimezone(UTC)  # exists (fold=0 is the first of two if ambiguous)
    return _end_of_gap(naive, zone)


def _end_of_gap(naive: datetime, zone: tzinfo) -> datetime:
    """The first valid instant after a local time that a spring-forward transition skipped."""
    # fold=1 reads the wall time with the offset after the transition, fold=0 with the one
    # before; in a gap they give two instants that bracket the transition.
    bounds = sorted(int(naive.replace(tzinfo=zone, fold=fold).timestamp()) for fold in (0, 1))
    low, high = bounds[0], bounds[1] + 1
    offset_after = datetime.fromtimestamp(high, UTC).astimezone(zone).utcoffset()
    # Transitions fall on whole seconds: bisect for the first second with the new offset.
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset_after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def next_time_of_day(
    now: datetime, at: time, zone: tzinfo, weekdays: Collection[str] = ()
) -> datetime:
    """The first instant strictly after `now` when the local time in `zone` is `at`."""
    allowed = {WEEKDAYS.index(day) for day in weekdays} if weekdays else _EVERY_DAY
    today = now.astimezone(zone).date()
    # Eight days cover "later today" plus a full week of weekdays.
    for days_ahead in range(9):
        day = today + timedelta(days=days_ahead)
        if day.weekday() not in allowed:
            continue
        candidate = localize(day, at, zone)
        if candidate > now:
            return candidate
    raise AssertionError("unreachable: every week has each weekday")  # pragma: no cover


def parse_moment(value: object, zone: tzinfo) -> datetime:
    """An instant (UTC) from an ISO 8601 text, a datetime or a date; naive means local to `zone`.

    Raises ValueError naming what was found when the value is not a date.
    """
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"expected an ISO 8601 date or date-time, found {text!r}") from exc
    if moment.tzinfo is None:
        return localize(moment.date(), moment.time(), zone)
    return moment.astimezone(UTC)


def due_from_date(
    value: object, zone: tzinfo, offset: timedelta | None, now: datetime
) -> tuple[datetime, bool]:
    """When a `date` wait is due, and whether that date (plus offset) was already past."""
    target = parse_moment(value, zone) + (offset or timedelta(0))
    if target <= now:
        return now, True
    return target, False


def in_window(now: datetime, start: time, end: time, zone: tzinfo) -> bool:
    """Whether the local time of `now` in `zone` falls in [start, end) (which may span midnight)."""
    local = now.astimezone(zone).time().replace(tzinfo=None)
    start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


# A batch of timers due at one instant asks the same window for each of its messages: a pure
# function of hashable values, so each answer is computed once (equal instants, equal answers).
@functools.lru_cache(maxsize=1024)
def quiet_hours_end(now: datetime, start: time, end: time, zone: tzinfo) -> datetime | None:
    """The end of the quiet-hours window `now` is in, or None when `now` is outside it."""
    if not in_window(now, start, end, zone):
        return None
    return next_time_of_day(now, end, zone)
