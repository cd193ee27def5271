"""The group-commit writer: one write per group, each caller gets its own result or error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from tidings.service.group_commit import GroupCommitWriter, WriterClosedError


class Recorder:
    """A blocking `write` that records its groups; the first call waits for a gate."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write(self, items: Sequence[int]) -> list[int | Exception]:
        self.entered.set()
        if not self.groups:
            self.gate.wait(timeout=30)
        self.groups.append(list(items))
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


def test_callers_queued_during_a_write_share_the_next_one() -> None:
    recorder = Recorder()
    writer: GroupCommitWriter[int, int] = GroupCommitWriter(recorder.write)

    async def scenario() -> list[int | BaseException]:
        first = asyncio.ensure_future(writer.submit(0))
        await asyncio.to_thread(recorder.entered.wait, 30)
        rest = [asyncio.ensure_future(writer.submit(i)) for i in range(1, 9)]
        while writer.pending < 8:  # all queued behind the blocked write
            await asyncio.sleep(0)
        recorder.gate.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        await writer.aclose()
        return results

    results = asyncio.run(scenario())
    assert recorder.groups == [[0], list(range(1, 9))]
    assert writer.commits == 2
    assert [r if isinstance(r, int) else str(r) for r in results] == [
        0,
        "odd 1",
        20,
        "odd 3",
        40,
        "odd 5",
        60,
        "odd 7",
        80,
    ]


def test_a_failed_group_fails_each_of_its_callers() -> None:
    def broken(items: Sequence[int]) -> list[int | Exception]:
        raise RuntimeError("disk full")

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(broken)

    async def scenario() -> list[int | BaseException]:
        results = await asyncio.gather(
            *(writer.submit(i) for i in range(3)), return_exceptions=True
        )
        await writer.aclose()
        return results

    results = asyncio.run(scenario())
    assert [str(r) for r in results] == ["disk full"] * 3
    assert writer.commits == 0


def test_closed_writer_refuses_new_items() -> None:
    writer: GroupCommitWriter[int, int] = GroupCommitWriter(list)

    async def scenario() -> None:
        assert await writer.submit(5) == 5
        await writer.aclose()
        with pytest.raises(WriterClosedError):
            await writer.submit(6)

    asyncio.run(scenario())
    assert writer.items_written == 1


def test_max_group_bounds_a_transaction() -> None:
    sizes: list[int] = []

    def write(items: Sequence[int]) -> list[int | Exception]:
        sizes.append(len(items))
        return list(items)

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(write, max_group=4)

    async def scenario() -> None:
        await asyncio.gather(*(writer.submit(i) for i in range(10)))
        await writer.aclose()

    asyncio.run(scenario())
    assert sum(sizes) == 10
    assert max(sizes) <= 4


def test_groups_are_bounded_by_weight() -> None:
    groups: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int | Exception]:
        groups.append(list(items))
        return list(items)

    writer: GroupCommitWriter[int, int] = GroupCommitWriter(write, max_group=10, weight=lambda n: n)

    async def scenario() -> None:
        # all queued before the writer runs: 6 + 4 fills a group, 5 + 12 would exceed it,
        # and an item heavier than the bound goes alone
        await asyncio.gather(*(writer.submit(n) for n in (6, 4, 5, 12, 1)))
        await writer.aclose()

    asyncio.run(scenario())
    assert groups == [[6, 4], [5], [12], [1]]


def test_a_caller_that_gives_up_leaves_its_item_and_the_others_written() -> None:
    recorder = Recorder()
    writer: GroupCommitWriter[int, int] = GroupCommitWriter(recorder.write)

    async def scenario() -> list[int | BaseException]:
        first = asyncio.ensure_future(writer.submit(0))
        await asyncio.to_thread(recorder.entered.wait, 30)
        waiting = [asyncio.ensure_future(writer.submit(i)) for i in (1, 2, 4)]
        while writer.pending < 3:
            await asyncio.sleep(0)
        # Given callers that hang up, one while its group is being written, two before
        waiting[0].cancel()
        first.cancel()
        recorder.gate.set()
        results = await asyncio.gather(first, *waiting, return_exceptions=True)
        await writer.aclose()
        return results

    results = asyncio.run(scenario())
    # Then every item is written all the same, and the others get their own results
    assert recorder.groups == [[0], [1, 2, 4]]
    assert [type(r).__name__ if isinstance(r, BaseException) else r for r in results] == [
        "CancelledError",
        "CancelledError",
        20,
        40,
    ]
