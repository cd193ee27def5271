"""A worker's transactions off the event loop, one at a time, on one thread of its own.

A commit may wait on the disk (SQLite's FULL sync), so the delivery worker never runs a
transaction on the loop; but `asyncio.to_thread` costs more than the worker's small
transactions themselves in places (a context copy, the executor's locks and work item, a
concurrent future chained to the loop's): about twice what a queue to a thread that stays,
and one wake-up of the loop with the result, cost. Where the store can keep a connection
(`KeptConnection`: SQLite), the thread keeps one while transactions keep coming, and gives it
back after a second without any. The thread lives as long as its owner: it stops once the
owner is collected, or when `stop` is called.

As with `to_thread`, a transaction whose caller was cancelled before it started is not run;
one already running runs to its end (its outcome is not awaited any more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar, cast

from tidings.ports import KeptConnection, Store, UnitOfWork

log = logging.getLogger(__name__)

_T = TypeVar("_T")
IDLE_S = 1.0  # how long a kept connection waits for the next transaction before it is given back
_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[UnitOfWork], Any]]


class TransactionThread:
    """Runs `work(uow)` in one transaction of `store` each, in turn, on a thread of its own."""

    def __init__(self, store: Store, lock: threading.Lock) -> None:
        self._store = store
        self._lock = lock  # also held by transactions the owner runs elsewhere
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, work: Callable[[UnitOfWork], _T]) -> _T:
        """`work`'s result, or what it raised, once its transaction has ended."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=_serve, args=(self._store, self._lock, self._jobs), daemon=True
            )
            self._thread.start()
        self._jobs.put((loop, future, work))
        return await future

    def stop(self) -> None:
        """Let the thread end once the transaction under way, if any, is over."""
        self._jobs.put(None)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait (up to `timeout_s`) until it has given its connection back."""
        self.stop()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)


def _serve(store: Store, lock: threading.Lock, jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The thread: each job in its own transaction, until told to stop. It holds no reference
    to the owner, so that the owner can be collected (which stops it)."""
    kept = _Kept(store)
    try:
        while (job := kept.next_job(jobs)) is not None:
            loop, future, work = job
            # Read across threads, but only a flag the loop sets once: at worst a transaction
            # cancelled at this very moment runs, as one cancelled a moment later would.
            if future.cancelled():
                continue
            try:
                with lock, kept.transaction() as uow:
                    result = work(uow)
            except BaseException as exc:  # handed to the caller, as to_thread hands it
                kept.release()  # the next transaction starts on a fresh connection, as before
                _settle(loop, future, None, exc)
            else:
                _settle(loop, future, result, None)
    finally:
        kept.release()


class _Kept:
    """The store's kept connection (`KeptConnection`), if it offers one, while jobs keep coming:
    opened by the first transaction, given back once none came for `IDLE_S`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._connection: contextlib.ExitStack | None = None
        self._transactions: Store = store

    def next_job(self, jobs: queue.SimpleQueue[_Job | None]) -> _Job | None:
        """The next job (None: stop), the connection given back while none comes."""
        if self._connection is not None:
            try:
                return jobs.get(timeout=IDLE_S)
            except queue.Empty:
                self.release()
        return jobs.get()

    def transaction(self) -> AbstractContextManager[UnitOfWork]:
        """A transaction on the kept connection (opened now if it is not)."""
        # Looked up on the class: a wrapper passing unknown names through to a store it wraps
        # (`__getattr__`) must still see its own transactions.
        offered = callable(getattr(type(self._store), "kept_connection", None))
        if self._connection is None and offered:
            with contextlib.ExitStack() as opening:
                self._transactions = opening.enter_context(
                    cast(KeptConnection, self._store).kept_connection()
                )
                self._connection = opening.pop_all()
        return self._transactions.transaction()

    def release(self) -> None:
        """Give the kept connection back, if one is kept."""
        connection, self._connection = self._connection, None
        self._transactions = self._store
        if connection is not None:
            try:
                connection.close()
            except Exception:
                log.warning("closing a kept store connection failed", exc_info=True)


def _settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: object,
    error: BaseException | None,
) -> None:
    try:
        loop.call_soon_threadsafe(_resolve, future, result, error)
    except RuntimeError:  # the loop is closed: nobody waits for the outcome
        log.debug("a transaction ended after its event loop closed")


def _resolve(future: asyncio.Future[Any], result: object, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
