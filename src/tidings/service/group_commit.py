"""Group commit: many concurrent callers, one transaction, every caller answered after it.

Callers `await submit(item)`. One writer task takes everything queued so far, hands it to a
blocking `write` function in a worker thread (which opens ONE store transaction for the whole
group and commits it), then resolves every caller's future with its own result. While a group
is being written the next one accumulates, so under load each commit carries many requests and
"durable before 2xx" holds for every one of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class WriterClosedError(RuntimeError):
    """The writer was closed; nothing more is accepted."""


class GroupCommitWriter(Generic[T, R]):
    """An asyncio front for a blocking group writer; `commits` counts groups written."""

    def __init__(
        self,
        # Returns, for each item, its result or the exception to raise in that caller.
        write: Callable[[Sequence[T]], Sequence[R | Exception]],
        *,
        max_group: int = 256,
        weight: Callable[[T], int] | None = None,
    ) -> None:
        self._write = write
        # A group holds items until their total weight reaches max_group (always >= 1 item):
        # for ingestion the weight is the number of events, so a transaction stays bounded.
        self._max_group = max_group
        self._weight = weight or (lambda _item: 1)
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.commits = 0
        self.items_written = 0

    @property
    def pending(self) -> int:
        """How many items wait for the next group (a gauge for metrics and tests)."""
        return len(self._queue)

    async def submit(self, item: T) -> R:
        """Queue one item and wait until the transaction holding it has committed."""
        if self._closed:
            raise WriterClosedError("the ingest writer is closed")
        loop = asyncio.get_running_loop()
        self._ensure_running(loop)
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        assert self._wakeup is not None
        self._wakeup.set()
        # Each caller awaits a future of its own: a caller cancelled (a client that hung up)
        # cancels only that future, never the write it shares with others, which skips it.
        return await future

    def _ensure_running(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is not None and self._loop is loop and not self._task.done():
            return
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._task = loop.create_task(self._run(), name="tidings-group-commit")

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                await self._write_group(self._take_group())
            if self._closed:
                return

    def _take_group(self) -> list[tuple[T, asyncio.Future[R]]]:
        total = count = 0
        for item, _ in self._queue:
            if count and total + self._weight(item) > self._max_group:
                break
            total += self._weight(item)
            count += 1
        group = self._queue[:count]
        del self._queue[:count]
        return group

    async def _write_group(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in group]
        try:
            results = await asyncio.to_thread(self._write, items)
        except Exception as exc:  # the whole group failed: every caller gets the error
            log.exception("group write of %d item(s) failed", len(items))
            results = [exc] * len(items)
        else:
            self.commits += 1
            self.items_written += len(items)
        for (_, future), result in zip(group, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        """Write what is queued, then stop the writer task."""
        self._closed = True
        if self._task is not None and not self._task.done():
            assert self._wakeup is not None
            self._wakeup.set()
            await self._task
