"""The delivery worker: drains the outbox through the senders and records every outcome.

One round (`run_once`) claims the messages due now (the store marks them `sending` under a
lease) and, in that same transaction, cancels those recalled since they were queued (see
`recall`: their run exited by a goal or was restarted, the contact unsubscribed, or the run
finished with the send and an event since reaches one of its exit goals: hence the worker's
workflow registry and engine environment). It sends the rest concurrently and records the
results as the sends finish, those that finished together in one short transaction
(`delivery_outcomes`). `drain` goes on claiming: when the claimed messages no longer fill the
free send slots, the transaction recording outcomes also claims the next batch, so the
connections never wait for the last sends of a batch before the next claim. The outcomes:

- sent: status `sent`, `sent_at`, the provider's reference, and a `delivered` trace entry;
- temporary failure: back to `pending` with `attempts + 1`, `last_error` and
  `next_attempt_at = now + retry_delay(...)`, never later than `max_age` after the message was
  due (`not_before`); a temporary failure at or past that age is `failed`, with the reason. So
  an outage of any length up to `max_age` delays messages and loses none;
- permanent failure: `failed` with the server's reply and a `delivery_failed` trace entry.

A worker that dies mid-round leaves its messages `sending`; once the lease runs out the next
round claims them again, including one sent whose outcome was not written yet (an outcome
waits for the transaction in progress, then is written with those that finished beside it).
The key (and so the Message-ID, and the outbox file name) is the same on that attempt, but
whether the first attempt reached the provider cannot be known: delivery is at-least-once at
the provider's boundary, exactly-once in the outbox.

Time comes from the Clock only, and backoff is a computed `next_attempt_at`, never a sleep.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from tidings.engine.decision import Environment
from tidings.errors import DeliveryError, PermanentDeliveryError
from tidings.model.contacts import Channel
from tidings.model.messages import Message, MessageStatus
from tidings.ports import Clock, EmailSender, SmsSender, Store, UnitOfWork
from tidings.service.delivery_outcomes import DeliveryStats, Outcome, OutcomeRecorder, retry_delay
from tidings.service.recall import Goals, recall
from tidings.service.registry import WorkflowRegistry
from tidings.service.transaction_thread import TransactionThread

__all__ = ["DeliveryStats", "DeliveryWorker", "retry_delay"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_ERROR = 1000  # characters of a server's reply kept in `last_error` and the trace


def _always() -> bool:
    return True


class DeliveryWorker:
    """Claims due messages, sends them through the senders, and records what happened."""

    def __init__(
        self,
        store: Store,
        email: EmailSender,
        sms: SmsSender,
        clock: Clock,
        *,
        registry: WorkflowRegistry,
        env: Environment,
        batch: int = 100,
        lease: timedelta = timedelta(minutes=5),
        max_age: timedelta = timedelta(days=3),
        backoff_base_s: float = 30,
        backoff_max_s: float = 3600,
        concurrency: int = 8,
    ) -> None:
        if batch < 1 or concurrency < 1:
            raise ValueError("batch and concurrency must be at least 1")
        if max_age <= timedelta(0):
            raise ValueError("max_age must be positive")
        self._store = store
        self._email = email
        self._sms = sms
        self._clock = clock
        self._goals = Goals(registry, env)
        self._batch = batch
        self._lease = lease
        self._outcomes = OutcomeRecorder(clock, max_age, backoff_base_s, backoff_max_s)
        self._concurrency = concurrency
        self._store_lock = threading.Lock()
        self._transactions = TransactionThread(store, self._store_lock)
        weakref.finalize(self, self._transactions.stop)

    async def run_once(self) -> DeliveryStats:
        """One round: claim what is due now, send it, record the outcomes as sends finish."""
        return await self._deliver(claims=1, go_on=_always)

    async def drain(
        self, until_idle: bool = True, *, go_on: Callable[[], bool] = _always
    ) -> DeliveryStats:
        """Claims until one claims nothing (or just one claim); the summed stats.

        Only what is due by the clock's time is sent: retries wait for the clock to reach
        their `next_attempt_at`, so this always ends. `go_on` is asked before each claim: once
        it says no (the daemon stopping), what was claimed is sent and recorded, and no more.
        """
        return await self._deliver(claims=None if until_idle else 1, go_on=go_on)

    async def _deliver(self, claims: int | None, go_on: Callable[[], bool]) -> DeliveryStats:
        """Claim, send and record, `claims` claims at most (None: until one claims nothing).

        At most `concurrency` sends are under way. Whenever sends finish, one transaction
        records their outcomes and checks the messages about to take their slots for recall
        again (`_step`): a message that waited for a slot is checked just before its send
        starts, so an order acknowledged while the earlier messages were sent cancels it, as
        if it had come before the claim. When the claimed messages no longer fill the free
        slots, that same transaction claims the next batch (recall-checked at its claim, as
        the first): the connections stay busy across batches instead of idling while the last
        sends of one finish and the next claim is made.
        """
        stats = DeliveryStats()
        waiting: collections.deque[tuple[int, Message]] = collections.deque()  # (order, message)
        sending: _Sending = {}  # each send's claim order
        claimed_so_far = 0  # the next message's claim order
        more = True  # whether to claim again
        failure: Exception | None = None
        try:
            while True:
                finished, abandoned = await _first_done(sending)
                free = 0 if abandoned is not None else self._concurrency - len(sending)
                wave = _next_wave(waiting, free)
                # After a failure or an abandoned send, finish what is claimed and stop.
                more = more and failure is None and abandoned is None
                claim = more and len(wave) < free and claims != 0 and go_on()
                if not (sending or finished or wave or claim or abandoned):
                    break
                step = await self._step(finished, wave, claim)
                failure = failure or step.error
                for status in step.statuses:
                    stats.count(status)
                stats.claimed += step.claimed
                stats.cancelled += step.claimed - len(step.fresh) + len(wave) - len(step.kept)
                if claim:
                    claims = None if claims is None else claims - 1
                    more = step.claimed > 0
                if abandoned is not None:
                    # A send ended by a BaseException (cancellation, exit) abandons the drain,
                    # once what was sent beside it is recorded; the leases bring the rest back.
                    raise abandoned
                # Only the wave and the batch claimed in this step's transaction are checked
                # now: the fresh ones take the slots the wave left (the wave did not fill them,
                # so nothing else waits), and what waits is checked in a later step.
                fresh = collections.deque((claimed_so_far + i, m) for i, m in enumerate(step.fresh))
                claimed_so_far += step.claimed
                self._start([*step.kept, *_next_wave(fresh, free - len(step.kept))], sending)
                waiting.extend(fresh)
        finally:
            for task in sending:
                task.cancel()
        if failure is not None:
            raise failure
        return stats

    def _start(self, wave: Sequence[tuple[int, Message]], sending: _Sending) -> None:
        """Start the wave's sends, each keyed by its claim order."""
        for order, message in wave:
            sending[asyncio.create_task(self._send(message))] = order

    async def _step(
        self,
        finished: Sequence[tuple[Message, Outcome]],
        wave: Sequence[tuple[int, Message]],
        claim: bool,
    ) -> _Step:
        """Record outcomes, check the next wave for recall and claim the next batch if asked,
        in one transaction.

        If that transaction fails, the outcomes are recorded as `_record_batch` says, the wave
        is checked on its own (a wave that cannot be checked again is sent, as checked at its
        claim) and the claim is made on its own (a claim that fails is the step's error).
        """
        if not wave and not claim:
            statuses, error = await self._record_batch(finished)
            return _Step(statuses, error=error)
        if not wave and not finished:
            claimed, fresh = await self._in_store(self._claim)  # the first claim: raises
            return _Step(claimed=claimed, fresh=fresh)

        def step(uow: UnitOfWork) -> _Step:
            statuses = self._outcomes.record_all(uow, finished) if finished else []
            kept = self._check_again(uow, wave) if wave else []
            claimed, fresh = self._claim(uow) if claim else (0, [])
            return _Step(statuses, kept, claimed, fresh)

        try:
            return await self._in_store(step)
        except Exception:
            log.warning("recording outcomes and checking %d messages together failed", len(wave))
        statuses, error = await self._record_batch(finished)
        kept: list[tuple[int, Message]] = []
        if wave:
            try:
                kept = await self._in_store(lambda uow: self._check_again(uow, wave))
            except Exception as exc:
                log.warning("%d messages sent as checked at their claim: %s", len(wave), _text(exc))
                kept = list(wave)
        claimed, fresh = 0, []
        if claim:
            try:
                claimed, fresh = await self._in_store(self._claim)
            except Exception as exc:
                error = error or exc
        return _Step(statuses, kept, claimed, fresh, error)

    def _check_again(
        self, uow: UnitOfWork, wave: Sequence[tuple[int, Message]]
    ) -> list[tuple[int, Message]]:
        """The wave's messages still to send now (`recall` cancels the others)."""
        kept = {m.key for m in recall(uow, [m for _, m in wave], self._clock.now(), self._goals)}
        return [(order, m) for order, m in wave if m.key in kept]

    def close(self) -> None:
        """Stop the transaction thread and give back the connection it keeps: before the
        store is closed (a connection kept past it would be closed only when collected)."""
        self._transactions.close()

    def next_due_at(self) -> datetime | None:
        """When the next message is due (or a lease runs out): the daemon's next alarm."""
        with self._store.transaction() as uow:
            return uow.next_message_due_at()

    def _claim(self, uow: UnitOfWork) -> tuple[int, list[Message]]:
        """Claim what is due and cancel the recalled in one transaction: how many, what to send.

        One transaction, so a message is never seen `sending` and then cancelled, and no other
        worker can claim it between the check and the claim.
        """
        now = self._clock.now()
        claimed = uow.claim_messages(now, self._batch, self._lease)
        return len(claimed), recall(uow, claimed, now, self._goals) if claimed else []

    async def _send(self, message: Message) -> tuple[Message, Outcome]:
        """Send one message; the outcome, not yet recorded."""
        return message, await self._attempt(message)

    async def _record_batch(
        self, finished: Sequence[tuple[Message, Outcome]]
    ) -> tuple[list[MessageStatus | None], Exception | None]:
        """Record outcomes in one transaction; the statuses recorded, and what failed if any.

        If that transaction fails, each outcome is tried again in its own, as each was before
        outcomes were batched: an outcome that cannot be written costs no other its record.
        One still unwritten leaves its message `sending`, sent again once its lease runs out
        (whether the first send reached the provider cannot be known); its error is returned,
        for the round to raise once the rest is recorded.
        """
        if not finished:
            return [], None
        try:
            return await self._in_store(lambda uow: self._outcomes.record_all(uow, finished)), None
        except Exception as exc:
            if len(finished) == 1:
                return [], exc
            log.warning("recording %d outcomes together failed; one at a time", len(finished))
        statuses: list[MessageStatus | None] = []
        failure: Exception | None = None
        for one in finished:
            try:
                statuses += await self._in_store(
                    functools.partial(self._outcomes.record_all, done=[one])
                )
            except Exception as exc:
                failure = failure or exc
        return statuses, failure

    async def _attempt(self, message: Message) -> Outcome:
        """One delivery attempt; every Exception becomes an outcome.

        So one message's trouble never stops the others. BaseExceptions (cancellation, exit)
        propagate: the round is abandoned and the leases bring its messages back.
        """
        try:
            if message.channel is Channel.email:
                reference = await self._email.send_email(message)
            else:
                reference = await self._sms.send_sms(message)
        except PermanentDeliveryError as exc:
            return Outcome(error=_text(exc), permanent=True)
        except DeliveryError as exc:
            return Outcome(error=_text(exc))
        except Exception as exc:
            # A sender bug or an odd reply it did not expect: try again later rather than
            # lose the message, and say so loudly.
            log.exception("sender raised an unexpected error for message %s", message.key)
            return Outcome(error=_text(exc))
        return Outcome(reference=reference)

    async def _in_store(self, work: Callable[[UnitOfWork], _T]) -> _T:
        """Run `work` in one transaction, off the event loop (a commit may wait on the disk)."""
        return await self._transactions.run(work)

    def _transaction(self, work: Callable[[UnitOfWork], _T]) -> _T:
        # One transaction at a time: concurrent SQLite writers would only queue on its lock.
        with self._store_lock, self._store.transaction() as uow:
            return work(uow)


_Sending = dict[asyncio.Task[tuple[Message, Outcome]], int]


@dataclass
class _Step:
    """What one step's transaction did: statuses recorded, the wave's messages still to send,
    how many were claimed and which of them to send, and what failed if anything did."""

    statuses: list[MessageStatus | None] = field(default_factory=list)
    kept: list[tuple[int, Message]] = field(default_factory=list)
    claimed: int = 0
    fresh: list[Message] = field(default_factory=list)
    error: Exception | None = None


async def _first_done(
    sending: _Sending,
) -> tuple[list[tuple[Message, Outcome]], BaseException | None]:
    """Wait for sends to finish (none if none is under way): their outcomes in claim order,
    so the records do not depend on the order the sends ended, and the first BaseException
    one of them ended with."""
    if not sending:
        return [], None
    done, _ = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
    order = {task: sending.pop(task) for task in done}
    return _results(sorted(done, key=order.__getitem__))


def _next_wave(
    waiting: collections.deque[tuple[int, Message]], free: int
) -> list[tuple[int, Message]]:
    """The waiting messages that fit in the free send slots, in claim order."""
    return [waiting.popleft() for _ in range(min(free, len(waiting)))]


def _results(
    done: Sequence[asyncio.Task[tuple[Message, Outcome]]],
) -> tuple[list[tuple[Message, Outcome]], BaseException | None]:
    """The outcomes of finished sends, and the first BaseException one of them ended with."""
    finished: list[tuple[Message, Outcome]] = []
    abandoned: BaseException | None = None
    for task in done:
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is None:
            finished.append(task.result())
        elif abandoned is None:
            abandoned = error
    return finished, abandoned


def _text(exc: BaseException) -> str:
    """An error as one bounded line for `last_error`."""
    text = " ".join((str(exc) or type(exc).__name__).split())
    return text[:_MAX_ERROR]
