"""Events held compressed: handed back whole, by time, file order kept among equal times."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tidings.model.events import Event, IdentifierKind
from tidings.service import packed_events
from tidings.service.packed_events import PackedEvents

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)


def event(n: int, at: datetime) -> Event:
    return Event(
        id=f"e{n}",
        name="cart_updated",
        identifiers={IdentifierKind.ext_id: f"u{n % 7}"},
        occurred_at=at,
        received_at=at,
        properties={"n": n, "text": "line\nbreak", "items": [{"price": 1.5}]},
    )


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packed_events, "BLOCK", 4)
    monkeypatch.setattr(packed_events, "KEPT", 2)


def test_events_come_back_whole_in_time_order_with_file_order_among_equal_times() -> None:
    times = [T0 + timedelta(seconds=s) for s in (5, 1, 5, 0, 3, 1, 5, 2, 2, 0, 4)]
    packed = PackedEvents()
    for n, at in enumerate(times):
        packed.append(event(n, at), line=n + 2)

    out = list(packed.in_order())

    expected = sorted(range(len(times)), key=lambda n: (times[n], n))
    assert [line for line, _ in out] == [n + 2 for n in expected]
    assert [e for _, e in out] == [event(n, times[n]) for n in expected]
    assert (len(packed), packed.first, packed.last) == (11, T0, T0 + timedelta(seconds=5))


def test_a_shuffled_file_reads_back_sorted_across_many_blocks() -> None:
    shuffled = list(range(200))
    random.Random(7).shuffle(shuffled)
    packed = PackedEvents()
    for n in shuffled:
        packed.append(event(n, T0 + timedelta(microseconds=n)), line=n)

    assert [e.id for _, e in packed.in_order()] == [f"e{n}" for n in range(200)]
    assert [e.id for _, e in packed.in_order()] == [f"e{n}" for n in range(200)]  # again


def test_an_empty_set_has_no_events_and_no_times() -> None:
    packed = PackedEvents()

    assert (list(packed.in_order()), packed.first, packed.last) == ([], None, None)
