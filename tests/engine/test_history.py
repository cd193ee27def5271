"""History helpers answer over the stored events plus the current one, as of `now`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.factories import T0, make_event
from tidings.engine.history import History

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
