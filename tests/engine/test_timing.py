"""Due times: wall-clock waits across DST changes, dates from events, quiet-hours windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.factories import make_contact
from tidings.engine.timing import (
    due_from_date,
    in_window,
    localize,
    next_time_of_day,
    parse_moment,
    quiet_hours_end,
    resolve_zone,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# In 2025 Paris goes from CET (UTC+1) to CEST (UTC+2) on 30 March at 01:00 UTC (02:00 -> 03:00)
# and back on 26 October at 01:00 UTC (03:00 -> 02:00).
UNTIL_0900_PARIS = [
    # now (UTC),                 next 09:00 in Paris (UTC)
    (utc(2025, 3, 29, 7, 59), utc(2025, 3, 29, 8, 0)),  # 08:59 CET: today, UTC+1
    (
        utc(2025, 3, 29, 8, 0),
        utc(2025, 3, 30, 7, 0),
    ),  # exactly 09:00: strictly after -> tomorrow, UTC+2
    (utc(2025, 3, 30, 0, 30), utc(2025, 3, 30, 7, 0)),  # 01:30 CET, before the change
    (utc(2025, 3, 30, 6, 59), utc(2025, 3, 30, 7, 0)),  # 08:59 CEST
    (utc(2025, 10, 25, 7, 30), utc(2025, 10, 26, 8, 0)),  # 09:30 CEST -> 09:00 CET next day
    (utc(2025, 10, 26, 0, 30), utc(2025, 10, 26, 8, 0)),  # the first 02:30
    (utc(2025, 10, 26, 1, 30), utc(2025, 10, 26, 8, 0)),  # the second 02:30
    (utc(2025, 10, 26, 8, 0), utc(2025, 10, 27, 8, 0)),
]


@pytest.mark.parametrize(("now", "due"), UNTIL_0900_PARIS)
def test_until_0900_in_paris_is_0900_local_on_both_sides_of_dst(
    now: datetime, due: datetime
) -> None:
    assert next_time_of_day(now, time(9, 0), PARIS) == due
    assert due.astimezone(PARIS).time() == time(9, 0)


UNTIL_0230_PARIS = [
    # spring: 02:30 does not exist on 30 March; the first valid instant after it is 03:00 CEST
    (utc(2025, 3, 29, 12, 0), utc(2025, 3, 30, 1, 0)),
    (utc(2025, 3, 30, 0, 59), utc(2025, 3, 30, 1, 0)),
    (
        utc(2025, 3, 30, 1, 0),
        utc(2025, 3, 31, 0, 30),
    ),  # fired at 03:00: next is 02:30 CEST tomorrow
    # autumn: 02:30 happens twice on 26 October; only the first (CEST, 00:30 UTC) fires
    (utc(2025, 10, 25, 12, 0), utc(2025, 10, 26, 0, 30)),
    (utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)),  # just fired: not again at 01:30 UTC
    (utc(2025, 10, 26, 0, 45), utc(2025, 10, 27, 1, 30)),
    (utc(2025, 10, 26, 1, 30), utc(2025, 10, 27, 1, 30)),
]


@pytest.mark.parametrize(("now", "due"), UNTIL_0230_PARIS)
def test_until_0230_in_paris_on_change_days_skips_the_gap_and_fires_once_in_the_fold(
    now: datetime, due: datetime
) -> None:
    assert next_time_of_day(now, time(2, 30), PARIS) == due


def test_a_local_time_in_new_yorks_spring_gap_moves_to_the_end_of_the_gap() -> None:
    # 9 March 2025, 02:00 EST -> 03:00 EDT (07:00 UTC)
    assert localize(date(2025, 3, 9), time(2, 30), NEW_YORK) == utc(2025, 3, 9, 7, 0)
    assert localize(date(2025, 11, 2), time(1, 30), NEW_YORK) == utc(2025, 11, 2, 5, 30)  # EDT


WEEKDAYS = [
    # now (UTC),               weekdays,          due (UTC)
    (utc(2025, 3, 30, 12, 0), ["mon"], utc(2025, 3, 31, 7, 0)),  # Sunday -> Monday 09:00 CEST
    (utc(2025, 3, 31, 7, 0), ["mon"], utc(2025, 4, 7, 7, 0)),  # Monday 09:00 exactly -> next week
    (utc(2025, 3, 31, 6, 0), ["mon"], utc(2025, 3, 31, 7, 0)),  # Monday 08:00 -> today
    (utc(2025, 3, 28, 12, 0), ["sat", "sun"], utc(2025, 3, 29, 8, 0)),  # Friday -> Saturday (CET)
    (utc(2025, 3, 29, 12, 0), ["sat", "sun"], utc(2025, 3, 30, 7, 0)),  # Saturday -> Sunday (CEST)
    (utc(2025, 10, 24, 12, 0), ["sun"], utc(2025, 10, 26, 8, 0)),  # change day itself
]


@pytest.mark.parametrize(("now", "weekdays", "due"), WEEKDAYS)
def test_until_with_weekdays_waits_for_the_next_allowed_day(
    now: datetime, weekdays: list[str], due: datetime
) -> None:
    assert next_time_of_day(now, time(9, 0), PARIS, weekdays) == due


ZONES = [
    # wait's zone,      contact's zone,  workflow's zone,   zone used
    ("contact", "Europe/Paris", "UTC", "Europe/Paris"),
    ("contact", None, "America/New_York", "America/New_York"),
    ("contact", "Mars/Olympus", "America/New_York", "America/New_York"),  # bad data falls back
    ("contact", None, None, "UTC"),
    ("Asia/Tokyo", "Europe/Paris", "UTC", "Asia/Tokyo"),
]


@pytest.mark.parametrize(("name", "contact_zone", "workflow_zone", "expected"), ZONES)
def test_the_zone_of_a_wait(
    name: str, contact_zone: str | None, workflow_zone: str | None, expected: str
) -> None:
    zone = resolve_zone(name, make_contact(timezone=contact_zone), workflow_zone)
    assert str(zone) == expected


NOW = utc(2025, 6, 2, 10, 0)

DATES = [
    # value,                         offset,               due,                      past
    ("2025-06-10T18:00:00+00:00", None, utc(2025, 6, 10, 18, 0), False),
    ("2025-06-10T18:00:00Z", timedelta(hours=-24), utc(2025, 6, 9, 18, 0), False),
    ("2025-06-10T18:00:00", None, utc(2025, 6, 10, 16, 0), False),  # naive: Paris, CEST
    ("2025-12-10T18:00:00", None, utc(2025, 12, 10, 17, 0), False),  # naive: Paris, CET
    ("2025-06-10", timedelta(hours=9), utc(2025, 6, 10, 7, 0), False),  # midnight Paris + 9h
    (datetime(2025, 6, 10, 18, 0, tzinfo=UTC), None, utc(2025, 6, 10, 18, 0), False),
    (date(2025, 6, 10), None, utc(2025, 6, 9, 22, 0), False),
    ("2025-06-01T09:00:00Z", None, NOW, True),  # already past: due now
    ("2025-06-03T09:00:00Z", timedelta(days=-2), NOW, True),  # past once the offset applies
]


@pytest.mark.parametrize(("value", "offset", "due", "past"), DATES)
def test_a_date_wait_is_due_at_the_date_plus_offset_or_now_when_past(
    value: object, offset: timedelta | None, due: datetime, past: bool
) -> None:
    assert due_from_date(value, PARIS, offset, NOW) == (due, past)


@pytest.mark.parametrize("value", ["tomorrow", "", "2025-13-01", 12])
def test_a_value_that_is_not_a_date_is_refused_with_what_was_found(value: object) -> None:
    with pytest.raises(ValueError, match="expected an ISO 8601"):
        parse_moment(value, PARIS)


QUIET = [
    # now (UTC),                 window,                   end of quiet hours (UTC)
    (utc(2025, 6, 2, 20, 0), (time(21), time(8)), utc(2025, 6, 3, 6, 0)),  # 22:00 CEST
    (utc(2025, 6, 2, 5, 0), (time(21), time(8)), utc(2025, 6, 2, 6, 0)),  # 07:00 CEST
    (utc(2025, 6, 2, 6, 0), (time(21), time(8)), None),  # 08:00 exactly: window over
    (utc(2025, 6, 2, 19, 0), (time(21), time(8)), utc(2025, 6, 3, 6, 0)),  # 21:00 exactly: in
    (utc(2025, 6, 2, 10, 0), (time(21), time(8)), None),  # noon: outside
    (utc(2025, 6, 2, 10, 30), (time(12), time(14)), utc(2025, 6, 2, 12, 0)),  # 12:30 lunch
    (utc(2025, 6, 2, 10, 30), (time(9), time(9)), None),  # empty window
    (
        utc(2025, 10, 25, 22, 0),
        (time(22), time(8)),
        utc(2025, 10, 26, 7, 0),
    ),  # ends after DST change
]


@pytest.mark.parametrize(("now", "window", "end"), QUIET)
def test_quiet_hours_end_when_now_is_in_the_window(
    now: datetime, window: tuple[time, time], end: datetime | None
) -> None:
    start, stop = window
    assert quiet_hours_end(now, start, stop, PARIS) == end
    assert in_window(now, start, stop, PARIS) is (end is not None)
    # Answers are kept per (instant, window, zone): the same instant in another zone is the same
    # question, and asking again gives the same answer.
    assert quiet_hours_end(now.astimezone(NEW_YORK), start, stop, PARIS) == end
    assert quiet_hours_end(now, start, stop, PARIS) == end


def test_quiet_hours_end_is_asked_anew_for_another_instant_window_or_zone() -> None:
    now = utc(2025, 6, 2, 20, 0)  # 22:00 in Paris, 16:00 in New York
    assert quiet_hours_end(now, time(21), time(8), PARIS) == utc(2025, 6, 3, 6, 0)
    assert quiet_hours_end(now, time(21), time(8), NEW_YORK) is None
    assert quiet_hours_end(now, time(23), time(8), PARIS) is None
    assert quiet_hours_end(now + timedelta(hours=10), time(21), time(8), PARIS) is None


def test_a_local_time_is_read_in_its_own_zone_and_on_its_own_day() -> None:
    # Local instants are remembered: each zone, day and time keeps its own answer.
    for _ in range(2):
        assert localize(date(2025, 3, 9), time(9, 0), PARIS) == utc(2025, 3, 9, 8, 0)
        assert localize(date(2025, 3, 9), time(9, 0), NEW_YORK) == utc(2025, 3, 9, 13, 0)  # EDT
        assert localize(date(2025, 3, 8), time(9, 0), NEW_YORK) == utc(2025, 3, 8, 14, 0)  # EST
        assert localize(date(2025, 3, 8), time(10, 0), NEW_YORK) == utc(2025, 3, 8, 15, 0)
    # A datetime given as the day counts by its date, and a time's own zone is not read.
    late = datetime(2025, 3, 8, 23, 0, tzinfo=UTC)
    assert localize(late, time(9, 0), NEW_YORK) == utc(2025, 3, 8, 14, 0)
    aware = time(9, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert localize(date(2025, 3, 8), aware, NEW_YORK) == utc(2025, 3, 8, 14, 0)


def test_the_end_of_quiet_hours_is_each_zones_own() -> None:
    now = utc(2025, 6, 3, 3, 0)  # 05:00 in Paris, 23:00 the day before in New York
    for _ in range(2):
        assert quiet_hours_end(now, time(21, 0), time(8, 0), PARIS) == utc(2025, 6, 3, 6, 0)
        assert quiet_hours_end(now, time(21, 0), time(8, 0), NEW_YORK) == utc(2025, 6, 3, 12, 0)
        assert quiet_hours_end(now, time(21, 0), time(7, 0), PARIS) == utc(2025, 6, 3, 5, 0)
