"""Durations as authors write them: `90s`, `15m`, `1h30m`, `2d`, `1w`, ISO `PT1H`, signed `-24h`."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from typing import Any

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_COMPACT = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)

DURATION_HELP = "a duration such as 90s, 15m, 1h30m, 2d, 1w or ISO 8601 PT1H"


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse a duration; a bare number means seconds. Raises ValueError naming the format."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"expected {DURATION_HELP}, found {text!r}")
    if isinstance(text, int | float):
        return timedelta(seconds=text)
    if isinstance(text, str):
        return _parse_text(text)
    return _parse_uncached(text)  # not text: fails as it always did (e.g. None has no strip)


@lru_cache(maxsize=512)
def _parse_text(text: str) -> timedelta:
    """A duration from its text, remembered: conditions ask for the same few texts per event
    (`within="1d"`), and a failure is not remembered, so it raises afresh each time."""
    return _parse_uncached(text)


def _parse_uncached(text: Any) -> timedelta:
    raw = text.strip()
    sign = 1
    if raw[:1] and raw[0] in "+-":
        sign = -1 if raw[0] == "-" else 1
        raw = raw[1:].strip()
    compact = raw.replace(" ", "").lower()
    if compact and (match := _COMPACT.match(compact)) and any(match.groups()):
        weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
        total = (
            weeks * _UNIT_SECONDS["w"]
            + days * _UNIT_SECONDS["d"]
            + hours * _UNIT_SECONDS["h"]
            + minutes * _UNIT_SECONDS["m"]
            + seconds
        )
        return sign * timedelta(seconds=total)
    if (iso := _ISO.match(raw.upper())) and raw.upper() not in {"P", "PT"}:
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        return sign * timedelta(
            weeks=parts.get("w", 0),
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    raise ValueError(f"expected {DURATION_HELP}, found {text!r}")


def format_duration(value: timedelta) -> str:
    """Write a duration back in the compact form (`1d2h`, `-24h`, `0s`)."""
    total = int(value.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if total >= size:
            out.append(f"{total // size}{unit}")
            total %= size
    return sign + ("".join(out) or "0s")
