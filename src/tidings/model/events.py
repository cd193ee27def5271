"""Events as the engine sees them: a name, who it is about, when it happened, and its data."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class IdentifierKind(StrEnum):
    """The identifiers Brevo's events API accepts, in the order a contact is looked up by."""

    contact_id = "contact_id"
    email_id = "email_id"
    ext_id = "ext_id"
    phone_id = "phone_id"
    whatsapp_id = "whatsapp_id"
    landline_number_id = "landline_number_id"


_PHONE_KINDS = (
    IdentifierKind.phone_id,
    IdentifierKind.whatsapp_id,
    IdentifierKind.landline_number_id,
)


def normalise_identifier(kind: IdentifierKind | str, value: object) -> str:
    """The canonical text of an identifier: emails lower-cased, phones without spaces."""
    text = str(value).strip()
    if kind == IdentifierKind.email_id:
        return text.lower()
    if kind in (
        IdentifierKind.phone_id,
        IdentifierKind.whatsapp_id,
        IdentifierKind.landline_number_id,
    ):
        return "".join(ch for ch in text if ch.isdigit() or ch == "+")
    return text


AttributeValue = str | int | float | bool


class Event(BaseModel):
    """One event about one contact. `seq` is the store's order of receipt (None before storing)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    identifiers: dict[IdentifierKind, str] = Field(min_length=1)
    occurred_at: datetime
    received_at: datetime
    properties: dict[str, Any] = Field(default_factory=dict)
    contact_properties: dict[str, AttributeValue] = Field(default_factory=dict)
    object: dict[str, Any] | None = None
    contact_id: str | None = None
    seq: int | None = None
    source: str = "api"
    # Identifiers this event carried that were not attached to `contact_id` (kind -> why, e.g.
    # "belongs to contact 42"). The event was recorded on the contact found by the
    # highest-priority identifier; nothing was moved or merged. Explain/trace show this note.
    conflicts: dict[IdentifierKind, str] = Field(default_factory=dict)

    @field_validator("occurred_at", "received_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("expected a time with a UTC offset")
        return value

    def snapshot(self) -> dict[str, Any]:
        """The template view as JSON (the date as ISO 8601 text), for storing with a run."""
        view = self.template_view()
        view["date"] = self.occurred_at.isoformat()
        return view

    def template_view(self) -> dict[str, Any]:
        """What templates and conditions see as `event`."""
        return {
            "id": self.id,
            "name": self.name,
            "date": self.occurred_at,
            "properties": self.properties,
            "contact_properties": self.contact_properties,
            "object": self.object,
        }
