"""Field checks of incoming JSON: the quick whole-tree check agrees with the field-by-field walk
that names the refused field, and sizes are measured on the same compact JSON as before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.errors import EventError
from tidings.model.events import IdentifierKind
from tidings.service import shapes
from tidings.service import validation as v

# Text that is sometimes unstorable: NUL characters and lone surrogates among ordinary ones.
texts = st.text(alphabet=st.sampled_from(["a", "é", "\x00", "\ud800", "😀", "\\", "u"]), max_size=4)
trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=12,
)


def walk_accepts(value: object, max_depth: int) -> bool:
    try:
        v._walk_tree(value, "p", max_depth=max_depth, depth=1)
    except EventError:
        return False
    return True


@given(trees, st.integers(min_value=1, max_value=5))
def test_the_quick_check_accepts_exactly_what_the_walk_accepts(value: object, depth: int) -> None:
    assert v.tree_is_clean(value, depth) is walk_accepts(value, depth)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": {"b": "x\x00"}}, "p.a.b: contains a NUL character, which cannot be stored"),
        ({"a": ["ok", "\ud800"]}, "p.a[1]: contains a lone surrogate (invalid Unicode)"),
        ({"a\x00": 1}, "p: contains a NUL character, which cannot be stored"),
        ({"a": {"b": {"c": 1}}}, "p.a.b.c: nested deeper than 3 levels"),
        ({"a": [[[]]]}, "p.a[0][0]: nested deeper than 3 levels"),
    ],
)
def test_a_refused_tree_names_the_first_refused_field(value: object, message: str) -> None:
    with pytest.raises(EventError) as refused:
        v.check_tree(value, "p", max_depth=3)
    assert str(refused.value) == message


def test_a_tree_as_deep_as_allowed_is_accepted() -> None:
    v.check_tree({"a": {"b": 1}, "c": [{}]}, "p", max_depth=3)


@given(trees)
def test_size_is_the_utf8_length_of_the_compact_json(value: object) -> None:
    try:
        expected = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    except UnicodeEncodeError:
        return  # lone surrogates: refused by check_tree before any size is taken
    v.check_size(value, "p", expected)
    with pytest.raises(EventError, match=rf"^p: {expected} bytes, more than"):
        v.check_size(value, "p", expected - 1)


def refusal(check: Callable[[], None]) -> str | None:
    try:
        check()
    except EventError as exc:
        return str(exc)
    return None


def tree_then_size(value: object, max_depth: int, max_bytes: int) -> None:
    v.check_tree(value, "p", max_depth=max_depth)
    v.check_size(value, "p", max_bytes)


# Also text sent as a NUL's escape, backslash and all: the quick check must not take it for one.
escapes = st.sampled_from(["\\u0000", "\\\\u0000", "\\u00001"])
json_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts | escapes,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(texts | escapes, children, max_size=3)
    ),
    max_leaves=16,
)


@given(json_trees, st.integers(min_value=1, max_value=6), st.integers(min_value=0, max_value=60))
def test_json_checks_refuse_as_the_tree_walk_then_the_size_would(
    value: object, depth: int, max_bytes: int
) -> None:
    assert refusal(
        lambda: v.check_json(value, "p", max_depth=depth, max_bytes=max_bytes)
    ) == refusal(lambda: tree_then_size(value, depth, max_bytes))


def test_json_checks_of_deep_lists_count_levels_not_brackets() -> None:
    wide = {"items": [{"sku": n} for n in range(40)]}  # 42 brackets, 4 levels
    v.check_json(wide, "p", max_depth=4, max_bytes=10_000)
    with pytest.raises(EventError, match=r"^p\.items\[0\]\.sku: nested deeper than 3 levels$"):
        v.check_json(wide, "p", max_depth=3, max_bytes=10_000)


def test_identifiers_are_read_in_kind_order_and_unknown_ones_named() -> None:
    found = v.identifiers({"ext_id": 7, "email_id": "A@B.example", "phone_id": None}, "ids")
    assert list(found.items()) == [
        (IdentifierKind.email_id, "a@b.example"),
        (IdentifierKind.ext_id, "7"),
    ]
    with pytest.raises(EventError) as refused:
        v.identifiers({"email": "a@b.example", "zz": 1}, "ids")
    assert str(refused.value) == (
        "ids: unknown identifier(s) 'email', 'zz'; expected one of contact_id, email_id, ext_id,"
        " landline_number_id, phone_id, whatsapp_id"
    )


def parse_as_before(body: bytes) -> object:
    """The reference: parse_json as it was, over `json.loads` itself."""
    if not body.strip():
        raise EventError("body", "empty body, expected a JSON object", code="missing_parameter")
    try:
        return json.loads(body, parse_constant=v._reject_constant, parse_float=v._finite_float)
    except UnicodeDecodeError as exc:
        raise EventError("body", f"not valid UTF-8 ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise EventError("body", f"malformed JSON: {exc.msg} at line {exc.lineno}") from exc
    except (ValueError, RecursionError) as exc:
        raise EventError("body", f"malformed JSON: {exc}") from exc


def outcome(parse: Callable[[bytes], object], body: bytes) -> object:
    try:
        return parse(body)
    except EventError as exc:
        return ("refused", exc.code, str(exc))


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": [1, 2.5, "\\u00e9", null, true, -0.0, 12345678901234567890]}',
        '{"a": "é"}'.encode("utf-16"),
        '{"a": "é"}'.encode("utf-32-le"),
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": "\xff"}',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e999}',
        b'{"a": "\\ud800"}',
        b'{"a": 1',
        b'{"a": 1} x',
        b"[" * 100_000,
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a": 1}{"b": 2}',
        b'{"a": 1} }',
        b'{"a": "\xed\xa0\x80", "b": {"c": [1.5, -2, "\\u0000"]}}',
        '{"a": "é"}'.encode("utf-16-le"),
        b'{"a": 1,}',
        b"{}",
        b"{",
        b"  ",
        b"1" * 5000,
    ],
)
def test_bodies_decode_as_json_loads_decodes_them(body: bytes) -> None:
    assert outcome(v.parse_json, body) == outcome(parse_as_before, body)


def test_event_ids_are_random_uuid4_hex_as_uuid4_gives_them() -> None:
    ids = [shapes.new_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids:
        parsed = uuid.UUID(hex=event_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert parsed.hex == event_id and len(event_id) == 32


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    )
)
def test_sizes_are_those_of_compact_json(value: object) -> None:
    text = json.dumps({"v": value}, ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode("utf-8", "surrogatepass"))
    v.check_size({"v": value}, "p", size)  # exactly at the limit: accepted
    with pytest.raises(EventError, match=f"^p: {size} bytes"):
        v.check_size({"v": value}, "p", size - 1)
