"""Recall: a queued marketing message is cancelled, not sent, once its reason to exist is gone.

A message can wait in the outbox for hours (quiet hours, a frequency cap, an SMTP outage) after
its run queued it. Meanwhile the run may end by an exit goal (the cart was ordered), be ended by
mode `restart` (a new run sends its own reminder) or by an operator, or the contact may
unsubscribe from the channel. Sending then would be the "reminder after the purchase" the
product promises not to send, so the delivery worker checks each message in the very
transaction that claims it: a recalled message is saved `cancelled` with the reason in
`last_error` and a `skip` trace entry, and is never handed to a sender. Other endings
(`finished`, an `exit` step, `error`) do not recall: those runs meant the message to go.

Transactional messages (`transactional: true`, e.g. an order confirmation) are never recalled:
they are exempt from consent, and a goal does not cancel them either, since a receipt is owed
whatever the customer did next.

An exit or unsubscribe that commits after the claim is like one that comes after the send.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tidings.model.contacts import Contact
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Outcome, Run
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import UnitOfWork

# Run endings that take back what the run queued but has not delivered yet.
RECALLING = frozenset({Outcome.exited_goal, Outcome.restarted, Outcome.cancelled})


def recall_reason(
    message: Message, run: Run | None, contact: Contact | None
) -> tuple[str, str] | None:
    """Why this message must not be sent now, as (cause, reason text); None when it may go.

    The cause is `unsubscribed` or the run's outcome (`exited_goal`, `restarted`, `cancelled`).
    """
    if message.transactional:
        return None
    if contact is not None and message.channel in contact.unsubscribed:
        return "unsubscribed", f"unsubscribed from {message.channel.value}"
    if run is not None and run.outcome is not None and run.outcome in RECALLING:
        why = f": {run.reason}" if run.reason else ""
        return run.outcome.value, f"run {run.outcome.value}{why}"
    return None


def recall(uow: UnitOfWork, claimed: Sequence[Message], now: datetime) -> list[Message]:
    """Cancel the claimed messages that are recalled (saved and traced); return the others."""
    runs: dict[str, Run | None] = {}
    contacts: dict[str, Contact | None] = {}
    keep: list[Message] = []
    cancelled: list[TraceEntry] = []
    for message in claimed:
        if message.transactional:
            keep.append(message)
            continue
        if message.run_id not in runs:
            runs[message.run_id] = uow.get_run(message.run_id)
        if message.contact_id not in contacts:
            contacts[message.contact_id] = uow.get_contact(message.contact_id)
        recalled = recall_reason(message, runs[message.run_id], contacts[message.contact_id])
        if recalled is None:
            keep.append(message)
            continue
        cause, reason = recalled
        update = {"status": MessageStatus.cancelled, "last_error": reason, "next_attempt_at": None}
        uow.save_message(message.model_copy(update=update))
        cancelled.append(_trace(message, cause, reason, now))
    if cancelled:
        uow.add_trace(cancelled)
    return keep


def _trace(message: Message, cause: str, reason: str, now: datetime) -> TraceEntry:
    """The `skip` entry of a recalled message, with the same data as a delivery entry's."""
    return TraceEntry(
        at=now,
        contact_id=message.contact_id,
        workflow_id=message.workflow_id,
        run_id=message.run_id,
        step=message.step,
        kind=TraceKind.skip,
        message=f"{message.channel.value} to {message.to} skipped: {reason} after it was queued",
        data={
            "key": message.key,
            "channel": message.channel.value,
            "attempts": message.attempts,
            "reason": cause,
        },
    )
