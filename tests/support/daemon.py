"""The daemon the HTTP tests run: uvicorn over SQLite in a thread, and how to look inside it.

Tests talk to it over a socket (the Brevo SDK, httpx) and read rows back through a *new*
store connection, so "stored" means committed to the file.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import uvicorn
from fastapi import FastAPI

from tidings.adapters.clock import ManualClock
from tidings.adapters.sql.keys import SqlKeyStore
from tidings.adapters.sql.store import SqlStore
from tidings.model.contacts import Contact
from tidings.model.events import Event
from tidings.model.keys import KeyKind
from tidings.service.ingest import IngestService

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
API_KEY = "test-api-key-0123456789"
TRACKER_KEY = "test-tracker-key-abcdef"


class Server(uvicorn.Server):
    """A uvicorn server that says when it is listening (no polling, no sleeping)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@dataclass
class Daemon:
    """A running daemon and what tests need to reach it and look inside."""

    url: str
    db_url: str
    clock: ManualClock
    ingest: IngestService
    app: FastAPI
    store: SqlStore
    keys: SqlKeyStore
    wakeups: list[int] = field(default_factory=list)

    @property
    def v3(self) -> str:
        """The base URL a Brevo SDK is given."""
        return f"{self.url}/v3"

    def client(self, **headers: str) -> httpx.Client:
        """An HTTP client with the api key (override or drop headers per test)."""
        base = {"api-key": API_KEY, **headers}
        return httpx.Client(
            base_url=self.url, headers={k: v for k, v in base.items() if v}, timeout=30
        )

    def events(self) -> list[Event]:
        """Every stored event, oldest seq first, read through a new connection."""
        fresh = SqlStore(self.db_url)
        try:
            with fresh.transaction() as uow:
                events, _ = uow.list_events(limit=100_000)
        finally:
            fresh.close()
        return sorted(events, key=lambda e: e.seq or 0)

    def contact(self, contact_id: str) -> Contact | None:
        """One contact, read through a new connection."""
        fresh = SqlStore(self.db_url)
        try:
            with fresh.transaction() as uow:
                return uow.get_contact(contact_id)
        finally:
            fresh.close()

    def contacts_count(self) -> int:
        """How many contacts the events point at (each event has one)."""
        return len({e.contact_id for e in self.events()})


def new_api_key(daemon: Daemon, kind: KeyKind = KeyKind.api) -> str:
    """Create a database key as `tidings keys create` does, and return its secret."""
    _, secret = daemon.keys.create(kind, "test", now=T0)
    return secret
