"""Outbound messages, as recorded in the outbox before any delivery attempt."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from tidings.model.contacts import Channel
from tidings.model.trace import TraceEntry, TraceKind


class MessageStatus(StrEnum):
    """Delivery state of an outbox row."""

    pending = "pending"  # waiting for (another) delivery attempt at `next_attempt_at`
    sending = "sending"  # claimed by a delivery worker; back to pending if it dies (lease)
    sent = "sent"
    failed = "failed"  # permanent failure or out of time, `last_error` holds the reason
    cancelled = "cancelled"  # recalled before delivery (docs/workflows.md), `last_error` says why


class Message(BaseModel):
    """One email or SMS. `key` is deterministic (run + step) so a retry never sends twice."""

    model_config = ConfigDict(frozen=True)

    key: str
    channel: Channel
    run_id: str
    contact_id: str
    workflow_id: str
    step: str
    to: str
    sender: str | None = None  # From address (email) or sender name (SMS)
    reply_to: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str
    transactional: bool = False
    created_at: datetime
    not_before: datetime  # quiet hours / frequency caps defer, never drop
    status: MessageStatus = MessageStatus.pending
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None  # the last failure's reply, or why it was cancelled
    sent_at: datetime | None = None
    provider_id: str | None = None  # Message-ID or the SMS provider's reference

    @property
    def message_id(self) -> str:
        """A deterministic RFC 5322 Message-ID, the same on every attempt."""
        return f"<{self.key.replace(':', '.').replace('/', '-')}@tidings>"

    def trace_entry(
        self, at: datetime, kind: TraceKind, text: str, *, attempts: int, **data: Any
    ) -> TraceEntry:
        """A trace entry about this message, on its run's step, with its key and channel."""
        return TraceEntry(
            at=at,
            contact_id=self.contact_id,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            step=self.step,
            kind=kind,
            message=text,
            data={"key": self.key, "channel": self.channel.value, "attempts": attempts, **data},
        )
