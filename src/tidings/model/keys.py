"""API keys: who may send events. Only a key's SHA-256 is ever stored; the key is shown once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class KeyKind(StrEnum):
    """`api` keys use `/v3` (read and write); `tracker` keys are public and may only add events."""

    api = "api"
    tracker = "tracker"


class ApiKey(BaseModel):
    """A key as the server knows it: never the secret itself."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: KeyKind
    name: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None


_PREFIX = {KeyKind.api: "tdg_api_", KeyKind.tracker: "tdg_trk_"}


def hash_key(secret: str) -> str:
    """The hex SHA-256 of a key, the only form in which keys are kept."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret(kind: KeyKind) -> str:
    """A fresh random key (256 bits), prefixed by its kind so a leaked one is recognisable."""
    return _PREFIX[kind] + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A short public id for a key, safe to log."""
    return "key_" + secrets.token_hex(6)
