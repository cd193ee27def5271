"""Checking JSON bodies field by field: every refusal is an EventError naming the field path.

These helpers sit under both event shapes (Brevo's `/v3/events` body and the tracker's
`/api/v2/*` bodies). They accept only what can be stored and read back unchanged: no NaN or
Infinity, no lone surrogates, no NUL characters (PostgreSQL refuses them), bounded nesting.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from tidings.errors import EventError
from tidings.model.events import AttributeValue, IdentifierKind, normalise_identifier

EVENT_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
# Deliberately loose: one @, no spaces, a dot in the domain. Deliverability is the mail
# server's business; this only catches values that are plainly not addresses.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_IDENTIFIER_CHARS = 255
MAX_KEY_CHARS = 255
# Iterating an Enum and reading `.value` cost more than the checks themselves, per event.
_KINDS = tuple((kind, kind.value) for kind in IdentifierKind)
_KNOWN_KINDS = frozenset(value for _, value in _KINDS)
_KNOWN_KINDS_TEXT = ", ".join(sorted(_KNOWN_KINDS))
_ATTRIBUTE_TYPES = (bool, int, float)  # a tuple: isinstance of a union costs more
# `json.dumps` with options builds an encoder per call; this one is built once, same output.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _compact_encoder() -> Callable[[object], str]:
    """`_COMPACT_JSON.encode` without its two Python frames: the C encoder it ends in, with the
    same options (run on every event's properties)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - Pythons without the C accelerator
        return _COMPACT_JSON.encode
    # No circular-reference bookkeeping (one dict shared by every call would not be safe
    # across threads): the values are decoded JSON, which holds no cycle.
    encode = make(
        None, _COMPACT_JSON.default, json.encoder.encode_basestring, None, ":", ",",
        False, False, True,
    )  # fmt: skip
    return lambda value: "".join(encode(value, 0))


_encode_compact = _compact_encoder()


@dataclass(frozen=True)
class Limits:
    """What one event may carry. Documented in docs/ingestion.md."""

    max_properties_bytes: int = 50 * 1024
    max_depth: int = 16
    max_batch_events: int = 1000
    future_tolerance: timedelta = timedelta(days=1)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # `1e999` decodes to infinity, which no database column or JSON encoder takes back.
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is out of range for a number")
    return number


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
# The scanner `_DECODER.decode` ends in (C where Python has it), with the same hooks.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(cast(Any, _DECODER))


def parse_json(body: bytes, field_path: str = "body") -> Any:
    """Decode a request body; malformed JSON, NaN/Infinity and bad UTF-8 are refused."""
    if body[:1] == b"{" and body[-1:] == b"}" and body[1:2] != b"\x00":
        decoded = _whole_object(body)
        if decoded is not None:
            return decoded
    if not body.strip():
        raise EventError(field_path, "empty body, expected a JSON object", code="missing_parameter")
    try:
        # What `json.loads(body, parse_constant=..., parse_float=...)` does, without building
        # a decoder per call: bytes decoded as their BOM or NUL pattern says, then parsed.
        if isinstance(body, bytes | bytearray):
            return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
        return json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
    except UnicodeDecodeError as exc:
        raise EventError(field_path, f"not valid UTF-8 ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise EventError(field_path, f"malformed JSON: {exc.msg} at line {exc.lineno}") from exc
    except (ValueError, RecursionError) as exc:
        # ValueError: NaN/Infinity or an integer too long to convert; RecursionError: absurd
        # nesting. Both are input problems, never a server fault.
        raise EventError(field_path, f"malformed JSON: {exc}") from exc


def _whole_object(body: bytes) -> Any:
    """The usual body, UTF-8 (no BOM, no NUL after its first byte: `json.detect_encoding` says
    so) and one object from its first byte to its last, decoded by the decoder's C scanner
    alone: the Python frames around it cost more than scanning a small event. None for any
    other body or any error: the full path decodes it, or names what is wrong, as before."""
    try:
        text = body.decode("utf-8", "surrogatepass")
        value, end = _SCAN(text, 0)
    except (ValueError, StopIteration, RecursionError):
        return None
    return value if end == len(text) else None


def is_absent(value: object) -> bool:
    """JSON null means the field was not given."""
    return value is None


def expect_object(value: object, field_path: str) -> dict[str, Any]:
    """The value as a JSON object, or an error naming the field."""
    if not isinstance(value, dict):
        raise EventError(field_path, f"expected an object, got {json_type(value)}")
    return value


def expect_string(value: object, field_path: str, *, max_chars: int | None = None) -> str:
    """The value as a storable, non-empty string."""
    if not isinstance(value, str):
        raise EventError(field_path, f"expected a string, got {json_type(value)}")
    if not value.strip():
        raise EventError(field_path, "must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise EventError(field_path, f"longer than {max_chars} characters")
    check_text(value, field_path)
    return value


def check_text(text: str, field_path: str) -> None:
    """Refuse strings the database cannot store as given."""
    if "\x00" in text:
        raise EventError(field_path, "contains a NUL character, which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EventError(field_path, "contains a lone surrogate (invalid Unicode)") from exc


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_tree(value: object, field_path: str, *, max_depth: int) -> None:
    """Walk nested JSON: every key and string storable, nesting no deeper than `max_depth`."""
    if not tree_is_clean(value, max_depth):
        _walk_tree(value, field_path, max_depth=max_depth, depth=1)


def _walk_tree(value: object, field_path: str, *, max_depth: int, depth: int) -> None:
    """`check_tree` item by item, to name the first field it refuses."""
    if depth > max_depth:
        raise EventError(field_path, f"nested deeper than {max_depth} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{field_path}.{key}" if _printable(key) else field_path)
            _walk_tree(item, f"{field_path}.{key}", max_depth=max_depth, depth=depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk_tree(item, f"{field_path}[{index}]", max_depth=max_depth, depth=depth + 1)
    elif isinstance(value, str):
        check_text(value, field_path)


def tree_is_clean(value: object, max_depth: int) -> bool:
    """Whether `check_tree` accepts this value, found without building a single field path:
    level by level, each key and string checked in C. When it says no, `check_tree` names
    the field."""
    level = [value]
    depth = 1
    while level:
        if depth > max_depth:
            return False
        below: list[object] = []
        for item in level:
            if isinstance(item, dict):
                if not all(_clean_text(key) for key in item):
                    return False
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
            elif isinstance(item, str) and not _clean_text(item):
                return False
        level = below
        depth += 1
    return True


def _clean_text(text: object) -> bool:
    """Whether `check_text` accepts this (anything but a string is left to it)."""
    if not isinstance(text, str) or "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in key


def check_size(value: object, field_path: str, max_bytes: int) -> None:
    """Refuse a value whose compact JSON form is larger than `max_bytes` (UTF-8)."""
    _check_text_size(_encode_compact(value), field_path, max_bytes)


def _check_text_size(text: str, field_path: str, max_bytes: int) -> None:
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > max_bytes:
        raise EventError(field_path, f"{size} bytes, more than the {max_bytes // 1024} KB allowed")


def check_json(value: object, field_path: str, *, max_depth: int, max_bytes: int) -> None:
    """`check_tree`, then `check_size`, of decoded JSON; the tree is walked only when its
    compact text, which the size needs anyway, cannot tell that it passes."""
    try:
        text = _encode_compact(value)
    except RecursionError:
        check_tree(value, field_path, max_depth=max_depth)  # names the level too deep
        raise
    if not (_text_is_clean(text) and _nesting_within(value, text, max_depth)):
        check_tree(value, field_path, max_depth=max_depth)
    _check_text_size(text, field_path, max_bytes)


def _text_is_clean(text: str) -> bool:
    """Whether every key and string of the value this compact JSON text encodes is one
    `check_text` accepts: the encoder writes a NUL as the escape `\\u0000` and a lone
    surrogate as itself, which UTF-8 cannot encode. (The escape may also be text sent as
    such, backslash and all: then the walk decides.)"""
    return "\\u0000" not in text and (text.isascii() or _clean_text(text))


def _nesting_within(value: object, text: str, max_depth: int) -> bool:
    """Whether `check_tree` finds the value nested no deeper than `max_depth`: surely so when
    its text opens fewer objects and arrays than that, else counted level by level."""
    if text.count("{") + text.count("[") < max_depth:
        return True
    level = [value]
    depth = 1
    while level:
        if depth > max_depth:
            return False
        below: list[object] = []
        for item in level:
            if isinstance(item, dict):
                below.extend(item.values())
            elif isinstance(item, list):
                below.extend(item)
        level = below
        depth += 1
    return True


def event_name(value: object, field_path: str) -> str:
    """A Brevo event name: 1-255 letters, digits, `-` or `_`."""
    if is_absent(value):
        raise EventError(field_path, "is required", code="missing_parameter")
    text = expect_string(value, field_path)
    if not EVENT_NAME.fullmatch(text):
        if len(text) > 255:
            raise EventError(field_path, "longer than 255 characters")
        raise EventError(field_path, "only letters, digits, '-' and '_' are allowed")
    return text


def identifier(kind: IdentifierKind, value: object, field_path: str) -> str:
    """One identifier, checked and normalised (emails lower-cased, phones digits and +)."""
    if kind is IdentifierKind.contact_id:
        # Brevo's contact ids are integers; ours are their decimal text.
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        if isinstance(value, str) and value.isdigit() and value.isascii() and int(value) > 0:
            return str(int(value))
        raise EventError(field_path, "expected a positive integer contact id")
    if isinstance(value, int) and not isinstance(value, bool) and kind != IdentifierKind.email_id:
        value = str(value)  # numeric ext_id or phone numbers sent as numbers
    text = expect_string(value, field_path, max_chars=MAX_IDENTIFIER_CHARS)
    if kind is IdentifierKind.email_id and not EMAIL.fullmatch(text.strip()):
        raise EventError(field_path, "expected an email address")
    normal = normalise_identifier(kind, text)
    if not normal or (
        kind not in (IdentifierKind.email_id, IdentifierKind.ext_id)
        and not any(ch.isdigit() for ch in normal)
    ):
        raise EventError(field_path, "expected a phone number")
    return normal


def identifiers(value: object, field_path: str) -> dict[IdentifierKind, str]:
    """The `identifiers` object: known kinds only, nulls dropped, at least one left."""
    if is_absent(value):
        raise EventError(field_path, "is required", code="missing_parameter")
    raw = expect_object(value, field_path)
    if not raw.keys() <= _KNOWN_KINDS:
        unknown = sorted(key for key in raw if key not in _KNOWN_KINDS)
        names = ", ".join(repr(key) for key in unknown)
        raise EventError(
            field_path, f"unknown identifier(s) {names}; expected one of {_KNOWN_KINDS_TEXT}"
        )
    found: dict[IdentifierKind, str] = {}
    for kind, name in _KINDS:
        item = raw.get(name)
        if not is_absent(item):
            found[kind] = identifier(kind, item, f"{field_path}.{name}")
    if not found:
        raise EventError(
            field_path, "at least one identifier is required", code="missing_parameter"
        )
    return found


def attributes(value: object, field_path: str) -> dict[str, AttributeValue]:
    """A flat map of string/number/boolean attributes; null values mean absent."""
    if is_absent(value):
        return {}
    raw = expect_object(value, field_path)
    result: dict[str, AttributeValue] = {}
    # Each field's path is written only to name a refusal: most events have none.
    for key, item in raw.items():
        if not key.strip() or len(key) > MAX_KEY_CHARS:
            raise EventError(
                f"{field_path}.{key}", f"attribute names must be 1-{MAX_KEY_CHARS} characters"
            )
        if not _clean_text(key):
            check_text(key, field_path)
        if is_absent(item):
            continue
        if isinstance(item, str):
            if not _clean_text(item):
                check_text(item, f"{field_path}.{key}")
        elif not isinstance(item, _ATTRIBUTE_TYPES):
            raise EventError(
                f"{field_path}.{key}",
                f"expected a string, number or boolean, got {json_type(item)}",
            )
        result[key] = item
    return result


def properties(value: object, field_path: str, limits: Limits) -> dict[str, Any]:
    """Free-form event data: an object of any JSON, bounded in size and depth."""
    if is_absent(value):
        return {}
    raw = expect_object(value, field_path)
    check_json(raw, field_path, max_depth=limits.max_depth, max_bytes=limits.max_properties_bytes)
    return raw


def event_date(value: object, field_path: str, *, now: datetime, limits: Limits) -> datetime:
    """An ISO 8601 time with any offset (none means UTC), not too far in the future."""
    if is_absent(value):
        return now
    text = expect_string(value, field_path)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text.strip()), time(), UTC)
        except ValueError:
            raise EventError(field_path, f"expected an ISO 8601 date-time, got {text!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        too_late = parsed - now > limits.future_tolerance
    except OverflowError:
        too_late = True
    if too_late:
        raise EventError(
            field_path,
            f"{text!r} is more than {_humanise(limits.future_tolerance)} in the future",
        )
    return parsed


def _humanise(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def object_ref(value: object, field_path: str) -> dict[str, Any] | None:
    """Brevo's `object`: a `type` and its `identifiers`, kept as given."""
    if is_absent(value):
        return None
    raw = expect_object(value, field_path)
    unknown = sorted(key for key in raw if key not in ("type", "identifiers"))
    if unknown:
        raise EventError(field_path, f"unknown field(s) {', '.join(map(repr, unknown))}")
    result: dict[str, Any] = {}
    if not is_absent(raw.get("type")):
        result["type"] = expect_string(raw["type"], f"{field_path}.type", max_chars=255)
    if not is_absent(raw.get("identifiers")):
        ids = expect_object(raw["identifiers"], f"{field_path}.identifiers")
        check_tree(ids, f"{field_path}.identifiers", max_depth=2)
        result["identifiers"] = ids
    return result or None


def reject_unknown(raw: Mapping[str, Any], allowed: tuple[str, ...], field_path: str) -> None:
    """Name any top-level field this body shape does not have."""
    unknown = sorted(key for key in raw if key not in allowed)
    if unknown:
        names = ", ".join(repr(key) for key in unknown)
        raise EventError(field_path, f"unknown field(s) {names}; expected {', '.join(allowed)}")
