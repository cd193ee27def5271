"""History helpers answer over the stored events plus the current one, as of `now`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from markupsafe import Markup

from engine.factories import T0, make_event
from tidings.engine.history import History, _same

DAY = timedelta(days=1)

PAST = [
    make_event("order_completed", T0 - 30 * DAY, order_id="A"),
    make_event("order_completed", T0 - 5 * DAY, order_id="B"),
    make_event("page_viewed", T0 - 1 * DAY),
    make_event("order_completed", T0 + DAY, order_id="future"),  # not yet history at T0
]


@pytest.mark.parametrize(
    ("name", "since", "within", "count"),
    [
        ("order_completed", None, None, 2),
        ("order_completed", None, "7d", 1),
        ("order_completed", None, "60d", 2),
        ("order_completed", T0 - 6 * DAY, None, 1),
        ("order_completed", (T0 - 31 * DAY).isoformat(), None, 2),
        ("order_completed", T0 - 31 * DAY, "7d", 1),  # both bounds apply
        ("order_completed", T0 - 5 * DAY, None, 1),  # `since` is inclusive
        ("page_viewed", None, "1d", 1),  # `within` is inclusive
        ("signed_up", None, None, 0),
    ],
)
def test_count_and_has_event_filter_by_name_since_and_within(
    name: str, since: object, within: str | None, count: int
) -> None:
    history = History(PAST, T0)
    assert history.count_events(name, since=since, within=within) == count
    assert history.has_event(name, since=since, within=within) is (count > 0)


def test_the_current_event_counts_once_even_when_already_stored() -> None:
    current = make_event("cart_updated", T0, cart_id="c-1")
    history = History([*PAST, current], T0, current)
    assert history.count_events("cart_updated") == 1


def test_the_current_event_counts_even_when_dated_a_little_after_now() -> None:
    current = make_event("cart_updated", T0 + timedelta(seconds=2))
    assert History(PAST, T0, current).has_event("cart_updated")


def test_last_event_is_the_latest_of_that_name_as_templates_see_it() -> None:
    last = History(PAST, T0).last_event("order_completed")
    assert last is not None
    assert last["properties"] == {"order_id": "B"}
    assert last["date"] == T0 - 5 * DAY
    assert History(PAST, T0).last_event("signed_up") is None


def test_since_that_is_not_a_date_is_refused() -> None:
    with pytest.raises(ValueError, match="since"):
        History(PAST, T0).has_event("order_completed", since=42)


VIEWS = [
    make_event("product_viewed", T0 - 3 * DAY, product_id=7),
    make_event("product_viewed", T0 - 2 * 60 * timedelta(minutes=1), product_id=7),
    make_event("product_viewed", T0 - timedelta(minutes=90), product_id=8),
    make_event("product_viewed", T0 - timedelta(minutes=30), product_id=7, color="red"),
    make_event("product_viewed", T0 - timedelta(minutes=10), product_id="7"),
]


@pytest.mark.parametrize(
    ("within", "where", "count"),
    [
        ("1d", None, 4),
        ("1d", {}, 4),
        ("1d", {"product_id": 7}, 3),  # the number 7 and the text "7" are the same product
        ("1d", {"product_id": "7"}, 3),  # as a run key (text) says it
        (None, {"product_id": 7}, 4),
        ("1d", {"product_id": 8}, 1),
        ("1d", {"product_id": 7, "color": "red"}, 1),  # every given property must match
        ("1d", {"color": None}, 0),  # an absent property matches nothing, not even none
        ("1d", {"product_id": 9}, 0),
    ],
)
def test_where_keeps_the_events_whose_properties_have_those_values(
    within: str | None, where: dict[str, object] | None, count: int
) -> None:
    history = History(VIEWS, T0)
    assert history.count_events("product_viewed", within=within, where=where) == count
    assert history.has_event("product_viewed", within=within, where=where) is (count > 0)


PROPERTY_VALUES = [7, "7", 7.0, "7.0", 8, True, 1, "1", None, "x", [7], Markup("7")]


@pytest.mark.parametrize("value", PROPERTY_VALUES)
@pytest.mark.parametrize("expected", PROPERTY_VALUES)
def test_where_matches_a_value_equal_to_the_one_asked_or_the_text_of_that_number(
    value: Any, expected: Any
) -> None:
    # The filters skip the text-or-number comparison for two values of one type: never a
    # difference, with one key or several.
    history = History([make_event("product_viewed", T0, product_id=value, other=1)], T0)
    same = int(value == expected or _same(value, expected))
    assert history.count_events("product_viewed", where={"product_id": expected}) == same
    both = {"product_id": expected, "other": 1}
    assert history.count_events("product_viewed", where=both) == same


def test_last_event_takes_the_same_filters() -> None:
    history = History(VIEWS, T0)
    last = history.last_event("product_viewed", where={"product_id": 8})
    assert last is not None and last["properties"] == {"product_id": 8}
    assert history.last_event("product_viewed", within="5m") is None


def test_where_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ValueError, match="where: expected a mapping"):
        History(VIEWS, T0).count_events("product_viewed", where=["product_id", 7])


def test_queries_one_after_another_each_see_the_whole_history() -> None:
    history = History([*VIEWS, *PAST], T0)
    first = history.events("product_viewed", within="1d")
    first.clear()  # an answer is the caller's own: changing it changes no later answer
    assert history.count_events("product_viewed", within="1d") == 4
    assert history.count_events("order_completed") == 2
    assert history.count_events("product_viewed", within="1d", where={"product_id": 7}) == 3
    assert history.count_events("product_viewed") == 5
    assert history.count_events("product_viewed", since=T0 - timedelta(minutes=30)) == 2


def test_events_of_one_time_keep_their_order_and_the_current_one_comes_last() -> None:
    same = [make_event("product_viewed", T0, id=f"v{n}", n=n) for n in range(3)]
    current = make_event("product_viewed", T0, id="now", n=9)
    history = History([same[2], current, same[0], same[1]], T0, current)
    assert [e.id for e in history.events("product_viewed", within="0s")] == [
        "v2",
        "v0",
        "v1",
        "now",
    ]
    last = history.last_event("product_viewed", since=T0)
    assert last is not None and last["id"] == "now"


def test_an_event_name_that_is_not_text_matches_nothing() -> None:
    assert History(VIEWS, T0).count_events(["product_viewed"]) == 0  # type: ignore[arg-type]


def test_where_with_a_key_that_is_not_text_is_refused() -> None:
    with pytest.raises(ValueError, match="where: expected a mapping"):
        History(VIEWS, T0).count_events("product_viewed", where={"product_id": 7, 1: 2})


def test_a_stored_copy_of_the_current_event_dated_after_now_counts_once() -> None:
    current = make_event("cart_updated", T0 + timedelta(seconds=2), id="c")
    stored = current.model_copy(update={"seq": 7})  # the store's copy of the same event
    history = History([*PAST, stored], T0, current)
    assert history.count_events("cart_updated") == 1
    assert history.events("cart_updated")[0] is current


def test_a_within_text_reaches_back_the_same_signed_or_not_and_a_bad_one_fails_each_time() -> None:
    history = History(PAST, T0)
    assert history.count_events("order_completed", within="-7d") == 1
    assert history.count_events("order_completed", within="7d") == 1
    for _ in range(2):
        with pytest.raises(ValueError, match="expected a duration"):
            history.count_events("order_completed", within="soon")
