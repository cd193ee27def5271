"""Field checks of incoming JSON: the quick whole-tree check agrees with the field-by-field walk
that names the refused field, and sizes are measured on the same compact JSON as before."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.errors import EventError
from tidings.model.events import IdentifierKind
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
