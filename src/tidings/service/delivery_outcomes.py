"""What one delivery attempt's outcome does to its message, and the worker's counts.

- sent: status `sent`, `sent_at`, the provider's reference, and a `delivered` trace entry;
- temporary failure: back to `pending` with `attempts + 1`, `last_error` and
  `next_attempt_at = now + retry_delay(...)`, never later than `max_age` after the message was
  due (`not_before`); a temporary failure at or past that age is `failed`, with the reason;
- permanent failure: `failed` with the server's reply and a `delivery_failed` trace entry.

Outcomes that finished together are written together: one read of their messages, one save
and one trace write for all (`OutcomeRecorder.record_all`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tidings.model.durations import format_duration
from tidings.model.messages import Message, MessageStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Clock, UnitOfWork
from tidings.service.batch_reads import message_states, messages_by_key, save_messages

log = logging.getLogger("tidings.service.delivery")  # the worker's log, as before the split


@dataclass
class DeliveryStats:
    """What one or more rounds did; true when anything was claimed.

    So `while await worker.run_once(): ...` drains what is due now.
    """

    claimed: int = 0
    sent: int = 0
    retrying: int = 0  # temporary failures, to be attempted again later
    failed: int = 0  # permanent failures and messages out of time
    cancelled: int = 0  # recalled at claim time, never sent

    def __bool__(self) -> bool:
        return self.claimed > 0

    def count(self, status: MessageStatus | None) -> None:
        """Count one recorded outcome (None: dropped, finished elsewhere)."""
        if status is MessageStatus.sent:
            self.sent += 1
        elif status is MessageStatus.pending:
            self.retrying += 1
        elif status is MessageStatus.failed:
            self.failed += 1

    def __add__(self, other: DeliveryStats) -> DeliveryStats:
        return DeliveryStats(
            self.claimed + other.claimed,
            self.sent + other.sent,
            self.retrying + other.retrying,
            self.failed + other.failed,
            self.cancelled + other.cancelled,
        )


def retry_delay(key: str, attempts: int, *, base_s: float, max_s: float) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt: exponential, capped, jittered.

    The ceiling doubles from `base_s` and stops at `max_s`; the delay falls in the upper half
    of it, at a point fixed by the key and attempt number, so that messages which failed
    together (an outage) come back spread out, and the same message always waits the same.
    """
    exponent = min(max(attempts, 1) - 1, 64)  # 2**64 * base is past any sensible cap
    ceiling = min(max_s, base_s * 2.0**exponent)
    digest = hashlib.sha256(f"{key}#{attempts}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return timedelta(seconds=ceiling * (0.5 + 0.5 * fraction))


@dataclass(frozen=True)
class Outcome:
    """The result of one attempt, before it is recorded."""

    reference: str | None = None
    error: str | None = None
    permanent: bool = False


@dataclass(frozen=True)
class OutcomeRecorder:
    """Writes outcomes as the module says, with the worker's clock and retry settings."""

    clock: Clock
    max_age: timedelta
    backoff_base_s: float
    backoff_max_s: float

    def record_all(
        self, uow: UnitOfWork, done: Sequence[tuple[Message, Outcome]]
    ) -> list[MessageStatus | None]:
        """Write outcomes, each as `_record` says, with one read, one save and one trace write
        for all."""
        current = _current(uow, [claimed for claimed, _ in done])
        saved: list[Message] = []
        trace: list[TraceEntry] = []
        statuses = [
            self._record(current.get(claimed.key), claimed, outcome, saved, trace)
            for claimed, outcome in done
        ]
        if saved:
            save_messages(uow, saved)
        if trace:
            uow.add_trace(trace)
        return statuses

    def _record(
        self,
        current: Message | None,
        claimed: Message,
        outcome: Outcome,
        saved: list[Message],
        trace: list[TraceEntry],
    ) -> MessageStatus | None:
        """One outcome: the message's new state onto `saved`, its trace entry onto `trace`; a
        message no longer `sending` (finished elsewhere) is left be."""
        if current is None or current.status is not MessageStatus.sending:
            log.warning("message %s changed while it was being sent; outcome dropped", claimed.key)
            return None
        now = self.clock.now()
        attempts = current.attempts + 1
        update: dict[str, Any] = {"attempts": attempts, "next_attempt_at": None}
        entry: TraceEntry | None = None
        if outcome.error is None:
            update.update(
                status=MessageStatus.sent,
                sent_at=now,
                provider_id=outcome.reference,
                last_error=None,
            )
            entry = current.trace_entry(
                now,
                TraceKind.delivered,
                f"{_what(current)} delivered",
                attempts=attempts,
                provider_id=outcome.reference,
            )
        elif outcome.permanent or now >= current.not_before + self.max_age:
            error = outcome.error
            if not outcome.permanent:
                age = format_duration(now - current.not_before)
                error = (
                    f"gave up after {attempts} attempts over {age}"
                    f" (delivery max age {format_duration(self.max_age)}): {error}"
                )
            update.update(status=MessageStatus.failed, last_error=error)
            entry = current.trace_entry(
                now,
                TraceKind.delivery_failed,
                f"{_what(current)}: {error}",
                attempts=attempts,
                error=error,
            )
        else:
            delay = retry_delay(
                current.key,
                attempts,
                base_s=self.backoff_base_s,
                max_s=self.backoff_max_s,
            )
            update.update(
                status=MessageStatus.pending,
                last_error=outcome.error,
                # The last attempt is made at the max age, not up to a backoff after it.
                next_attempt_at=min(now + delay, current.not_before + self.max_age),
            )
        saved.append(current.model_copy(update=update))
        if entry is not None:
            trace.append(entry)
        status: MessageStatus = update["status"]
        log.info("message %s: %s after %d attempt(s)", current.key, status.value, attempts)
        return status


def _what(message: Message) -> str:
    """`email to a@b.c` / `sms to +336…`, for trace lines."""
    return f"{message.channel.value} to {message.to}"


def _current(uow: UnitOfWork, claimed: Sequence[Message]) -> dict[str, Message]:
    """The messages as they are now, by key (those gone are left out). A message's content never
    changes, and its delivery state only by a claim, a recall or an outcome: one still sending
    with the attempts it was claimed with is as it was claimed, so only the others are read
    whole (reading every one whole, HTML and text, was half the cost of recording it)."""
    states = message_states(uow, [message.key for message in claimed])
    current: dict[str, Message] = {}
    changed: list[str] = []
    for message in claimed:
        state = states.get(message.key)
        if state == (message.status, message.attempts):
            current[message.key] = message
        elif state is not None:
            changed.append(message.key)
    if changed:
        current.update(messages_by_key(uow, changed))
    return current
