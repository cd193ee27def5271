"""Fixtures for the HTTP tests: `make_daemon(**options)` starts a real daemon on a free
loopback port (uvicorn in a thread, SQLite in tmp_path); all are stopped at teardown."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from brevo import Brevo
from fastapi import FastAPI

from support.daemon import API_KEY, T0, TRACKER_KEY, Daemon, Server
from tidings.adapters.clock import ManualClock
from tidings.adapters.http.app import HttpDeps, HttpLimits, create_app
from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.sql.keys import SqlKeyStore
from tidings.adapters.sql.store import SqlStore
from tidings.service.ingest import IngestService
from tidings.service.validation import Limits


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons on fresh SQLite files; all are stopped at teardown."""
    running: list[tuple[Server, threading.Thread, SqlStore, SqlKeyStore]] = []

    def start(
        *,
        limits: HttpLimits | None = None,
        event_limits: Limits | None = None,
        duplicate_window: timedelta = timedelta(minutes=5),
        wrap: Callable[[FastAPI], Any] | None = None,
        db_url: str | None = None,
        store_wrapper: Callable[[SqlStore], Any] | None = None,
    ) -> Daemon:
        db_url = db_url or f"sqlite:///{tmp_path / f'tidings-{len(running)}.db'}"
        sql_store = SqlStore(db_url)
        sql_store.migrate()
        store = store_wrapper(sql_store) if store_wrapper is not None else sql_store
        key_store = SqlKeyStore(db_url)
        clock = ManualClock(T0)
        ingest = IngestService(store, clock, limits=event_limits, duplicate_window=duplicate_window)
        checker = KeyChecker(
            api_keys=[API_KEY], tracker_keys=[TRACKER_KEY], lookup=key_store, clock=clock
        )
        wakeups: list[int] = []
        deps = HttpDeps(
            store=store,
            clock=clock,
            ingest=ingest,
            keys=checker,
            limits=limits or HttpLimits(),
            on_ingested=lambda: wakeups.append(1),
        )
        app = create_app(deps)
        served = wrap(app) if wrap is not None else app
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it every response with a body waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = Server(
            uvicorn.Config(served, log_config=None, lifespan="on", timeout_graceful_shutdown=5)
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        if not server.ready.wait(timeout=30):
            raise RuntimeError("uvicorn did not start")
        running.append((server, thread, sql_store, key_store))
        return Daemon(
            url=f"http://127.0.0.1:{port}",
            db_url=db_url,
            clock=clock,
            ingest=ingest,
            app=app,
            store=sql_store,
            keys=key_store,
            wakeups=wakeups,
        )

    yield start
    for server, thread, store, key_store in running:
        server.should_exit = True
        thread.join(timeout=30)
        store.close()
        key_store.close()


@pytest.fixture
def brevo_client(daemon: Daemon) -> Iterator[Brevo]:
    """The official Brevo SDK (5.1.0) pointed at the daemon; its HTTP client closed after."""
    with httpx.Client(timeout=30) as http:
        yield Brevo(api_key=API_KEY, base_url=daemon.v3, httpx_client=http)


@pytest.fixture
def daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    """One daemon with default limits."""
    return make_daemon()
