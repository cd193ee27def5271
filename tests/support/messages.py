"""Factories for outbox messages, shared by the delivery tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tidings.model.contacts import Channel
from tidings.model.messages import Message

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def make_message(n: int = 1, **overrides: Any) -> Message:
    """An email message to `user{n}@example.org`, due at T0; any field can be overridden."""
    fields: dict[str, Any] = {
        "key": f"run-{n}:0",
        "channel": Channel.email,
        "run_id": f"run-{n}",
        "contact_id": f"contact-{n}",
        "workflow_id": "welcome",
        "step": "0",
        "to": f"user{n}@example.org",
        "sender": "Tidings <news@example.com>",
        "subject": f"Hello {n}",
        "text": f"Plain body {n}",
        "html": f"<p>HTML body {n}</p>",
        "created_at": T0,
        "not_before": T0,
    }
    fields.update(overrides)
    return Message(**fields)


def make_sms(n: int = 1, **overrides: Any) -> Message:
    """An SMS to a French mobile number, due at T0."""
    fields: dict[str, Any] = {
        "channel": Channel.sms,
        "to": f"+3361234567{n % 10}",
        "sender": None,
        "subject": None,
        "html": None,
        "text": f"Your code is {1000 + n}",
        "transactional": True,
    }
    fields.update(overrides)
    return make_message(n, **fields)
