"""Contacts: identifiers, attributes, time zone and per-channel consent."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tidings.model.events import IdentifierKind


class Channel(StrEnum):
    """A delivery channel; consent is kept per channel."""

    email = "email"
    sms = "sms"


class Contact(BaseModel):
    """A person events are about. Created on first sight, found again by any identifier."""

    model_config = ConfigDict(frozen=True)

    id: str
    identifiers: dict[IdentifierKind, str] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    timezone: str | None = None
    unsubscribed: frozenset[Channel] = frozenset()
    created_at: datetime
    updated_at: datetime

    @property
    def email(self) -> str | None:
        """The contact's email address, from its identifier or its EMAIL attribute."""
        value = self.identifiers.get(IdentifierKind.email_id) or self.attributes.get("EMAIL")
        return str(value) if value else None

    @property
    def phone(self) -> str | None:
        """The contact's mobile number, from its identifier or its SMS attribute."""
        value = self.identifiers.get(IdentifierKind.phone_id) or self.attributes.get("SMS")
        return str(value) if value else None

    def template_view(self) -> dict[str, Any]:
        """What templates and conditions see as `contact`: attributes, then identifiers."""
        view: dict[str, Any] = dict(self.attributes)
        view.update({kind.value: value for kind, value in self.identifiers.items()})
        view.update(
            id=self.id,
            email=self.email,
            phone=self.phone,
            timezone=self.timezone,
            unsubscribed=sorted(self.unsubscribed),
        )
        return view
