"""Template filters for money, numbers and dates, installed in every Tidings environment.

`money` formats an amount for a currency (its symbol and its number of decimals, e.g. JPY has
none) in a small set of locales. `date` and `datetime` accept aware or naive datetimes, dates,
ISO 8601 strings and Unix timestamps, and show them in a time zone: the `tz` argument, else the
contact's `timezone` attribute from the render context, else UTC. A naive value is taken as UTC.
A contact's time zone comes from data and may be wrong: an unknown one falls back to UTC rather
than failing the send; an unknown `tz` argument is the author's mistake and is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Undefined, pass_context
from jinja2.runtime import Context

# Symbol (English usage, as in CLDR) and minor-unit digits (ISO 4217) of common currencies.
CURRENCIES: dict[str, tuple[str, int]] = {
    "EUR": ("€", 2),
    "USD": ("$", 2),
    "GBP": ("£", 2),
    "JPY": ("¥", 0),
    "CHF": ("CHF", 2),
    "CAD": ("CA$", 2),
    "AUD": ("A$", 2),
    "NZD": ("NZ$", 2),
    "CNY": ("CN¥", 2),
    "HKD": ("HK$", 2),
    "SGD": ("SGD", 2),
    "INR": ("₹", 2),
    "KRW": ("₩", 0),
    "BRL": ("R$", 2),
    "MXN": ("MX$", 2),
    "SEK": ("SEK", 2),
    "NOK": ("NOK", 2),
    "DKK": ("DKK", 2),
    "PLN": ("PLN", 2),
    "CZK": ("CZK", 2),
    "HUF": ("HUF", 2),
    "RON": ("RON", 2),
    "TRY": ("TRY", 2),
    "ILS": ("₪", 2),
    "ZAR": ("ZAR", 2),
    "VND": ("₫", 0),
    "CLP": ("CLP", 0),
    "ISK": ("ISK", 0),
    "KWD": ("KWD", 3),
    "BHD": ("BHD", 3),
    "TND": ("TND", 3),
}


@dataclass(frozen=True)
class NumberStyle:
    """How a locale writes an amount: separators and where the currency symbol goes."""

    group: str
    decimal: str
    symbol_first: bool


# en: "€1,234.50"; fr: "1 234,50 €" (narrow no-break space groups, no-break space before €).
LOCALES: dict[str, NumberStyle] = {
    "en": NumberStyle(",", ".", symbol_first=True),
    "fr": NumberStyle("\u202f", ",", symbol_first=False),
    "de": NumberStyle(".", ",", symbol_first=False),
    "es": NumberStyle(".", ",", symbol_first=False),
    "it": NumberStyle(".", ",", symbol_first=False),
    "nl": NumberStyle(".", ",", symbol_first=True),
    "pt": NumberStyle(".", ",", symbol_first=False),
}


def _defined(value: Any) -> None:
    """Let a missing variable fail as itself (naming the variable), not as a wrong type."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError here


def _decimal(value: Any, filter_name: str) -> Decimal:
    """An exact Decimal from a str, int, float or Decimal (floats via their shortest repr)."""
    _defined(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise TypeError(f"{filter_name}: expected a number, found {type(value).__name__}")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"{filter_name}: expected a number, found {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{filter_name}: expected a finite number, found {value!r}")
    return number


def _style(locale: str) -> NumberStyle:
    language = locale.replace("-", "_").split("_", 1)[0].lower()
    try:
        return LOCALES[language]
    except KeyError:
        known = ", ".join(LOCALES)
        raise ValueError(f"unknown locale {locale!r} (known: {known})") from None


def _group_digits(number: Decimal, decimals: int, style: NumberStyle) -> str:
    quantum = Decimal(1).scaleb(-decimals)
    text = f"{abs(number.quantize(quantum, rounding=ROUND_HALF_UP)):f}"
    whole, _, fraction = text.partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    grouped = style.group.join(groups)
    return f"{grouped}{style.decimal}{fraction}" if fraction else grouped


def _sign(amount: Decimal, digits: str) -> str:
    """A minus sign, unless rounding made the amount zero ("-0.00" reads as a bug)."""
    return "-" if amount < 0 and any(c in "123456789" for c in digits) else ""


def money(amount: Any, currency: str = "EUR", locale: str = "en") -> str:
    """Format `amount` in `currency`: `12.5|money` → "€12.50", `1234|money("USD")` → "$1,234.00"."""
    number = _decimal(amount, "money")
    code = str(currency).strip().upper()
    style = _style(locale)
    known = CURRENCIES.get(code)
    symbol, decimals = known if known else (code, 2)
    digits = _group_digits(number, decimals, style)
    sign = _sign(number, digits)
    if known is None:
        return f"{sign}{digits} {code}"
    if style.symbol_first:
        # Alphabetic symbols ("CHF") need a space; signs ("€", "$") sit against the digits.
        gap = " " if symbol[-1].isalpha() else ""
        return f"{sign}{symbol}{gap}{digits}"
    return f"{sign}{digits}\u00a0{symbol}"


def number(value: Any, decimals: int = 0, locale: str = "en") -> str:
    """Format a number with grouped thousands: `1234567|number` → "1,234,567"."""
    amount = _decimal(value, "number")
    digits = _group_digits(amount, decimals, _style(locale))
    return _sign(amount, digits) + digits


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _context_zone(context: Context) -> tzinfo:
    """The contact's zone when it names a real one, else UTC."""
    contact = context.get("contact")
    name = contact.get("timezone") if isinstance(contact, Mapping) else None
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            return UTC
    return UTC


def _as_datetime(value: Any, filter_name: str) -> datetime | date:
    _defined(value)
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
        raise ValueError(f"{filter_name}: expected an ISO 8601 date or date-time, found {value!r}")
    raise TypeError(f"{filter_name}: expected a date or date-time, found {type(value).__name__}")


def _localise(context: Context, value: Any, tz: str | None, filter_name: str) -> datetime | date:
    moment = _as_datetime(value, filter_name)
    if not isinstance(moment, datetime):
        return moment  # a calendar date has no zone to convert
    zone = _zone(tz) if tz else _context_zone(context)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone)


@pass_context
def date_filter(
    context: Context, value: Any, format: str = "%d %b %Y", tz: str | None = None
) -> str:
    """Show the date of `value` in `tz`, the contact's zone or UTC: "05 Mar 2025"."""
    return _localise(context, value, tz, "date").strftime(format)


@pass_context
def datetime_filter(
    context: Context,
    value: Any,
    format: str = "%d %b %Y %H:%M",
    tz: str | None = None,
) -> str:
    """Show the date and time of `value` in `tz`, the contact's zone or UTC: "05 Mar 2025 14:30"."""
    return _localise(context, value, tz, "datetime").strftime(format)


FILTERS: dict[str, Callable[..., Any]] = {
    "money": money,
    "number": number,
    "date": date_filter,
    "datetime": datetime_filter,
}
