"""Filters for money and dates, as authors call them from templates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from tidings.compile.filters import money, number
from tidings.compile.sandbox import make_environment


def render(source: str, **context: Any) -> str:
    """Render `source` in the Tidings sandbox with `context`."""
    return make_environment().from_string(source).render(context)


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("12.5", "EUR", "en", "€12.50"),
        (1234, "USD", "en", "$1,234.00"),
        (Decimal("1234567.891"), "USD", "en", "$1,234,567.89"),
        (12.345, "EUR", "en", "€12.35"),  # half up, from the float's shortest repr
        (0.1 + 0.2, "EUR", "en", "€0.30"),
        (1500, "JPY", "en", "¥1,500"),
        ("1499.5", "JPY", "en", "¥1,500"),
        ("12.5", "gbp", "en", "£12.50"),
        ("12.5", "CHF", "en", "CHF 12.50"),
        ("1.2345", "KWD", "en", "KWD 1.235"),
        ("12.5", "XYZ", "en", "12.50 XYZ"),
        (-5, "EUR", "en", "-€5.00"),
        ("-0.001", "EUR", "en", "€0.00"),  # rounding to zero drops the sign
        ("1234.5", "EUR", "fr", "1\u202f234,50\u00a0€"),
        ("1234.5", "EUR", "de_DE", "1.234,50\u00a0€"),
        ("1234.5", "EUR", "fr-CA", "1\u202f234,50\u00a0€"),
        (" 7 ", "EUR", "en", "€7.00"),
    ],
)
def test_money(amount: Any, currency: str, locale: str, expected: str) -> None:
    assert money(amount, currency, locale) == expected


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("abc", "money: expected a number, found 'abc'"),
        (True, "money: expected a number, found bool"),
        (None, "money: expected a number, found NoneType"),
        ("nan", "money: expected a finite number, found 'nan'"),
    ],
)
def test_money_refuses_what_is_not_an_amount(amount: Any, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        money(amount)


def test_money_refuses_an_unknown_locale() -> None:
    with pytest.raises(ValueError, match="unknown locale 'xx'"):
        money(1, "EUR", "xx")


def test_money_from_a_template() -> None:
    assert render("{{ total | money('USD') }}", total="1234") == "$1,234.00"
    assert render("{{ total | money }}", total=12.5) == "€12.50"


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [(1234567, 0, "1,234,567"), ("1234.567", 2, "1,234.57"), (-1000, 0, "-1,000"), (5, 1, "5.0")],
)
def test_number(value: Any, decimals: int, expected: str) -> None:
    assert number(value, decimals) == expected


MOMENT = datetime(2025, 3, 5, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        ("{{ d | date }}", {"d": MOMENT}, "05 Mar 2025"),
        ("{{ d | datetime }}", {"d": MOMENT}, "05 Mar 2025 23:30"),
        # the contact's zone moves the date to the next day
        ("{{ d | date }}", {"d": MOMENT, "contact": {"timezone": "Europe/Paris"}}, "06 Mar 2025"),
        ("{{ d | datetime }}", {"d": MOMENT, "contact": {"timezone": "Asia/Tokyo"}},
         "06 Mar 2025 08:30"),
        # an explicit zone wins over the contact's
        ("{{ d | datetime(tz='America/New_York') }}",
         {"d": MOMENT, "contact": {"timezone": "Asia/Tokyo"}}, "05 Mar 2025 18:30"),
        ("{{ d | datetime('%Y-%m-%dT%H:%M%z', tz='Europe/Paris') }}", {"d": MOMENT},
         "2025-03-06T00:30+0100"),
        # ISO strings with Z or an offset, naive ones taken as UTC
        ("{{ d | datetime }}", {"d": "2025-03-05T23:30:00Z"}, "05 Mar 2025 23:30"),
        ("{{ d | datetime }}", {"d": "2025-03-05T23:30:00+02:00"}, "05 Mar 2025 21:30"),
        ("{{ d | datetime }}", {"d": "2025-03-05T23:30:00"}, "05 Mar 2025 23:30"),
        ("{{ d | date('%A %d %B') }}", {"d": "2025-03-05"}, "Wednesday 05 March"),
        # a calendar date is not shifted by any zone
        ("{{ d | date }}", {"d": date(2025, 3, 5), "contact": {"timezone": "Pacific/Kiritimati"}},
         "05 Mar 2025"),
        ("{{ d | datetime }}", {"d": 0}, "01 Jan 1970 00:00"),
        ("{{ d | datetime }}",
         {"d": datetime(2025, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))},
         "01 Jan 2025 17:00"),
        # a contact's bad zone is data: fall back to UTC rather than fail the send
        ("{{ d | datetime }}", {"d": MOMENT, "contact": {"timezone": "Mars/Olympus"}},
         "05 Mar 2025 23:30"),
        ("{{ d | datetime }}", {"d": MOMENT, "contact": {"timezone": None}}, "05 Mar 2025 23:30"),
    ],
)  # fmt: skip
def test_dates_in_the_right_zone(source: str, context: Mapping[str, Any], expected: str) -> None:
    assert render(source, **context) == expected


@pytest.mark.parametrize(
    ("source", "context", "error", "message"),
    [
        ("{{ d | date(tz='Mars/Olympus') }}", {"d": MOMENT}, ValueError,
         "unknown time zone 'Mars/Olympus'"),
        ("{{ d | date }}", {"d": "next tuesday"}, ValueError,
         "date: expected an ISO 8601 date or date-time, found 'next tuesday'"),
        ("{{ d | datetime }}", {"d": [1]}, TypeError,
         "datetime: expected a date or date-time, found list"),
    ],
)  # fmt: skip
def test_date_errors_say_what_was_wrong(
    source: str, context: Mapping[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        render(source, **context)
