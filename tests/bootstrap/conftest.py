"""A real daemon in a subprocess (`python -m tidings run`), driven by a file clock.

`start_daemon()` runs the daemon on SQLite in tmp_path against the workflows and templates
written by the test, a real SMTP server (aiosmtpd) on loopback, and a clock file. Time moves
only when the test says: `daemon.advance(timedelta)` rewrites the clock file, sends SIGUSR1 and
returns once `/metrics` reports that request handled (engine pass and delivery pass both done).
The test waits for the daemon to react, never for time to pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.smtp_server import SmtpTestServer
from tidings.adapters.file_clock import write_clock_file
from tidings.adapters.sql.store import SqlStore
from tidings.model.events import Event
from tidings.model.messages import Message
from tidings.model.runs import Run

T0 = datetime(2030, 6, 3, 9, 0, tzinfo=UTC)
API_KEY = "e2e-test-api-key-0123456789"
SECRET_KEY = "e2e-test-secret-key"
REACTION_TIMEOUT_S = 60  # how long the daemon may take to react; never a measurement

CART_WORKFLOW = """
    id: cart
    name: Abandoned cart
    trigger:
      event: cart_updated
      if: "event.properties.total > 0"
    key: "{{ event.properties.cart_id }}"
    exit:
      - event: order_completed
        if: "event.properties.cart_id == run.key"
        reason: bought
    steps:
      - wait: 1h
      - send_email: {template: cart}
    """

CART_TEMPLATE = """---
subject: "{{ contact.FIRSTNAME }}, your cart {{ params.cart_id }} is waiting"
---
<p>Hello {{ contact.FIRSTNAME }}, your cart of {{ params.total }} EUR is waiting.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
"""


def free_port() -> int:
    """A port nobody listens on right now (the daemon and SMTP server keep theirs across
    restarts, so links and URLs stay valid)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], Any], what: str, timeout: float = REACTION_TIMEOUT_S) -> Any:
    """Poll `condition` until it returns something truthy: waiting for a reaction."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class LogReader:
    """Collects the daemon's JSON log lines from its stderr, in a thread."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            with self._lock:
                self.raw.append(line)
                with contextlib.suppress(ValueError):
                    self.lines.append(json.loads(line))

    def find(self, message: str) -> list[dict[str, Any]]:
        with self._lock:
            return [line for line in self.lines if line.get("message", "").startswith(message)]

    def text(self) -> str:
        with self._lock:
            return "".join(self.raw)

    def join(self) -> None:
        self._thread.join(timeout=REACTION_TIMEOUT_S)


@dataclass
class DaemonProcess:
    """One running daemon and the handles a test drives it with."""

    proc: subprocess.Popen[str]
    port: int
    clock_file: Path
    db_url: str
    logs: LogReader
    ticks: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"api-key": API_KEY}, timeout=30)

    def post_event(self, name: str, email: str, **properties: Any) -> httpx.Response:
        body: dict[str, Any] = {
            "event_name": name,
            "identifiers": {"email_id": email},
            "event_properties": properties,
        }
        first = email.split("@", maxsplit=1)[0].capitalize()
        body["contact_properties"] = {"FIRSTNAME": first}
        with self.client() as client:
            return client.post("/v3/events", json=body)

    def now(self) -> datetime:
        return datetime.fromisoformat(self.clock_file.read_text(encoding="utf-8"))

    def tick(self) -> None:
        """Make the daemon handle everything due now; return once engine and delivery did."""
        self.ticks += 1
        self.proc.send_signal(signal.SIGUSR1)
        wait_until(
            lambda: self.metric("tidings_ticks_handled") >= self.ticks,
            f"tick {self.ticks} to be handled",
        )

    def advance(self, delta: timedelta) -> None:
        """Let the daemon finish what is due now (events just posted included), move the clock
        forward, and let it handle what became due."""
        self.tick()
        write_clock_file(self.clock_file, self.now() + delta)
        self.tick()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            text = client.get("/metrics").text
        found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return found

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the daemon and wait for it to exit; its exit code."""
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=REACTION_TIMEOUT_S)
        self.logs.join()
        return code

    # What the tables say, through a new connection.

    def runs(self) -> list[Run]:
        return self._read(_all_runs)

    def messages(self) -> list[Message]:
        return self._read(_all_messages)

    def events(self) -> list[Event]:
        return self._read(lambda uow: uow.list_events(limit=100_000)[0])

    def _read(self, work: Callable[[Any], Any]) -> Any:
        store = SqlStore(self.db_url)
        try:
            with store.transaction() as uow:
                return work(uow)
        finally:
            store.close()


def _contact_ids(uow: Any) -> list[str]:
    events, _ = uow.list_events(limit=100_000)
    return sorted({e.contact_id for e in events if e.contact_id})


def _all_runs(uow: Any) -> list[Run]:
    return [r for cid in _contact_ids(uow) for r in uow.runs_for_contact(cid, active_only=False)]


def _all_messages(uow: Any) -> list[Message]:
    return [m for cid in _contact_ids(uow) for m in uow.messages_for_contact(cid)]


@dataclass
class Site:
    """A tmp folder with workflows, templates, a database and a clock file."""

    root: Path
    smtp: SmtpTestServer
    port: int = field(default_factory=free_port)
    running: list[DaemonProcess] = field(default_factory=list)

    @property
    def workflows(self) -> Path:
        return self.root / "workflows"

    @property
    def templates(self) -> Path:
        return self.root / "templates"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.root / 'tidings.db'}"

    @property
    def clock_file(self) -> Path:
        return self.root / "clock"

    def write_workflow(self, name: str, text: str) -> None:
        (self.workflows / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")

    def env(self, **overrides: str | None) -> dict[str, str]:
        """The daemon's environment; an override of None removes that variable."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        base.update(
            TIDINGS_DATABASE_URL=self.db_url,
            TIDINGS_SMTP_URL=f"smtp://127.0.0.1:{self.smtp.port}?timeout=5",
            TIDINGS_WORKFLOWS_DIR=str(self.workflows),
            TIDINGS_TEMPLATES_DIR=str(self.templates),
            TIDINGS_OUTBOX_DIR=str(self.root / "outbox"),
            TIDINGS_API_KEYS=API_KEY,
            TIDINGS_SECRET_KEY=SECRET_KEY,
            TIDINGS_PUBLIC_URL=f"http://127.0.0.1:{self.port}",
            TIDINGS_MAIL_FROM="Shop <shop@example.com>",
            TIDINGS_CLOCK_FILE=str(self.clock_file),
            TIDINGS_LOG_LEVEL="INFO",
        )
        base.update({k: v for k, v in overrides.items() if v is not None})
        return {k: v for k, v in base.items() if overrides.get(k, "") is not None}

    def start(self, **env: str | None) -> DaemonProcess:
        """Start a daemon and return once it listens."""
        if not self.clock_file.exists():
            write_clock_file(self.clock_file, T0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "run", "--port", str(self.port)],
            cwd=self.root,
            env=self.env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        logs = LogReader(proc.stderr)
        daemon = DaemonProcess(proc, self.port, self.clock_file, self.db_url, logs)
        self.running.append(daemon)
        try:
            wait_until(
                lambda: logs.find("listening") or proc.poll() is not None, "the daemon to listen"
            )
        except AssertionError:
            proc.kill()
            raise
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {proc.returncode}:\n{logs.text()}")
        wait_until(lambda: _ready(daemon), "/ready")
        return daemon

    def cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `tidings` command against the same settings."""
        return subprocess.run(
            [sys.executable, "-m", "tidings", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=REACTION_TIMEOUT_S,
            check=False,
        )


def _ready(daemon: DaemonProcess) -> bool:
    try:
        with httpx.Client(base_url=daemon.url, timeout=5) as client:
            return client.get("/ready").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    server = SmtpTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def site(tmp_path: Path, smtp: SmtpTestServer) -> Iterator[Site]:
    """Workflows (the abandoned cart) and templates in tmp_path; daemons killed at teardown."""
    found = Site(tmp_path, smtp)
    found.workflows.mkdir()
    found.templates.mkdir()
    found.write_workflow("cart.yaml", CART_WORKFLOW)
    (found.templates / "cart.email.html").write_text(CART_TEMPLATE, encoding="utf-8")
    yield found
    for daemon in found.running:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=REACTION_TIMEOUT_S)
        if daemon.proc.stderr is not None:
            daemon.logs.join()
            daemon.proc.stderr.close()


def message_ids(smtp: SmtpTestServer) -> list[str]:
    """The Message-ID of every message the SMTP server accepted, in order."""
    return [str(received.message()["Message-ID"]) for received in smtp.received]
