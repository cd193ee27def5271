"""Consent: signed unsubscribe links, and unsubscribing a contact from one channel.

An unsubscribe link names the contact and the channel and is signed, so it works with no login
and cannot be forged for another contact:

    token = "<channel>.<base64url(contact id)>.<base64url(HMAC-SHA256(secret, id, channel)[:16])>"

Unsubscribing is idempotent: the first time records a trace entry (`update_contact`, with the
channel and where the request came from); a repeat changes nothing and records nothing, so mail
scanners that follow links several times do not fill the trace.

SMS replies unsubscribe when their first word is a stop keyword (STOP, ARRET, UNSUBSCRIBE, ...),
compared without case or accents, as carriers do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tidings.model.contacts import Channel, Contact
from tidings.model.events import IdentifierKind, normalise_identifier
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Clock, Store

MAC_BYTES = 16  # 128 bits: plenty against forgery, and keeps links short
STOP_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "ARRET", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "STOPSMS"}
)
CONSENT_WORKFLOW = "*"  # trace entries that belong to no workflow (as the processor's own)


class UnsubscribeResult(StrEnum):
    """What an unsubscribe request came to."""

    unsubscribed = "unsubscribed"  # consent withdrawn now
    already = "already"  # it was withdrawn before: nothing changed
    unknown_contact = "unknown_contact"


@dataclass(frozen=True)
class ConsentToken:
    """The contact and channel an unsubscribe link stands for."""

    contact_id: str
    channel: Channel


class ConsentTokens:
    """Creates and checks signed unsubscribe tokens with one secret key."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise ValueError("the secret key for unsubscribe links must not be empty")
        self._key = secret_key.encode("utf-8")

    def create(self, contact_id: str, channel: Channel) -> str:
        """The url-safe token for this contact and channel (the same every time)."""
        encoded = _b64(contact_id.encode("utf-8"))
        return f"{channel.value}.{encoded}.{_b64(self._mac(contact_id, channel))}"

    def verify(self, token: str) -> ConsentToken | None:
        """The contact and channel of a genuine token; None for anything else."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        channel_text, encoded, mac_text = parts
        try:
            channel = Channel(channel_text)
            contact_id = _unb64(encoded).decode("utf-8")
            mac = _unb64(mac_text)
        except (ValueError, binascii.Error):
            return None
        if not contact_id or not hmac.compare_digest(mac, self._mac(contact_id, channel)):
            return None
        return ConsentToken(contact_id, channel)

    def _mac(self, contact_id: str, channel: Channel) -> bytes:
        # A separator no id can contain keeps ("ab", "c") and ("a", "bc") apart.
        payload = f"{contact_id}\x1f{channel.value}".encode()
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:MAC_BYTES]


def unsubscribe_url(public_url: str, token: str) -> str:
    """The link served by the daemon for a token."""
    return f"{public_url.rstrip('/')}/u/{token}"


def unsubscribe(
    store: Store, clock: Clock, contact_id: str, channel: Channel, *, source: str
) -> UnsubscribeResult:
    """Withdraw a contact's consent on one channel; traced the first time only."""
    with store.transaction() as uow:
        contact = uow.get_contact(contact_id)
        if contact is None:
            return UnsubscribeResult.unknown_contact
        if channel in contact.unsubscribed:
            return UnsubscribeResult.already
        now = clock.now()
        uow.save_contact(
            contact.model_copy(
                update={"unsubscribed": contact.unsubscribed | {channel}, "updated_at": now}
            )
        )
        uow.add_trace([_trace(contact, channel, source, now)])
        return UnsubscribeResult.unsubscribed


def is_stop_request(text: str) -> bool:
    """Whether an SMS reply asks to stop: its first word is a stop keyword."""
    words = _fold(text).split()
    return bool(words) and words[0].strip(".!,;:") in STOP_KEYWORDS


def contact_for_phone(store: Store, phone: str) -> Contact | None:
    """The contact whose mobile number this is, if any."""
    number = normalise_identifier(IdentifierKind.phone_id, phone)
    if not number:
        return None
    with store.transaction() as uow:
        found = uow.find_contacts({IdentifierKind.phone_id: number})
        if not found and not number.startswith("+"):
            # Carriers often drop the `+` of an international number.
            found = uow.find_contacts({IdentifierKind.phone_id: "+" + number})
    return found[0] if found else None


def _trace(contact: Contact, channel: Channel, source: str, now: datetime) -> TraceEntry:
    return TraceEntry(
        at=now,
        contact_id=contact.id,
        workflow_id=CONSENT_WORKFLOW,
        kind=TraceKind.update_contact,
        message=f"unsubscribed from {channel.value} ({source})",
        data={"unsubscribed": channel.value, "source": source},
    )


def _fold(text: str) -> str:
    """Upper case without accents: `Arrêt` and `ARRET` are the same keyword."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or any(c in text for c in "=+/"):
        raise ValueError("not unpadded url-safe base64")
    standard = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    # validate=True: any character outside the alphabet is an error, not silently dropped.
    return base64.b64decode(standard, validate=True)
