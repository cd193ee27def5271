"""`tidings import`: history that starts nothing but counts for conditions, events for the
workflows with --trigger, a running daemon over HTTP, and every refused row by line."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import Result
from typer.testing import CliRunner

from support.daemon import API_KEY, T0, Server
from tidings.adapters.clock import ManualClock
from tidings.adapters.events_client import EventsClient, ImportRefusedError
from tidings.adapters.http.app import HttpDeps, create_app
from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.sql.keys import SqlKeyStore
from tidings.adapters.sql.store import SqlStore
from tidings.bootstrap.importing import import_over_http
from tidings.cli.main import app
from tidings.engine.core import Environment
from tidings.model.events import Event, IdentifierKind
from tidings.service.ingest import IngestService
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry
from tidings.service.shapes import brevo_event
from tidings.service.validation import Limits
from tidings.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
ENV = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "TIDINGS_API_KEYS": None}
WORKFLOWS = {
    "back.yaml": """
        id: back
        trigger:
          event: visited
          if: 'has_event("order_completed")'
        steps:
          - send_email: {template: back}
        """,
    "thanks.yaml": """
        id: thanks
        trigger: {event: order_completed}
        steps:
          - send_email: {template: back}
        """,
}
BACK = '---\nsubject: "Welcome back"\n---\n<p>Again</p>\n'
HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)


def invoke(*args: str) -> Result:
    return CliRunner(env=ENV).invoke(app, ["import", *args])


def body(name: str, email: str = "ann@example.com", **extra: Any) -> dict[str, Any]:
    return {
        "event_name": name,
        "identifiers": {"email_id": email},
        "event_date": "2024-04-01T10:00:00Z",
        **extra,
    }


def jsonl(path: Path, items: list[dict[str, Any] | str]) -> str:
    lines = [item if isinstance(item, str) else json.dumps(item) for item in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@dataclass
class Shop:
    """A database with workflows, and the engine that would run on it."""

    url: str
    folder: Path

    def later_event(self, name: str, email: str = "ann@example.com") -> None:
        """What the daemon does with a new event: ingest it, then process the log."""
        now = datetime(2030, 6, 1, tzinfo=UTC)
        store = SqlStore(self.url)
        try:
            ingest = IngestService(store, ManualClock(now))
            event = brevo_event(
                {"event_name": name, "identifiers": {"email_id": email}},
                now=now,
                limits=Limits(),
            )
            ingest.ingest_now(ingest.submission([event], key_id="test", body=b""))
        finally:
            store.close()

    def process(self) -> int:
        """Run the engine over the log; how many events it applied."""
        store = SqlStore(self.url)
        try:
            registry, loaded = WorkflowRegistry.from_directory(
                self.folder / "workflows", self.folder / "templates"
            )
            assert loaded.problems == []
            registry.record_versions(store)
            env = Environment(templates=registry.catalog, mail_from="s@example.com", sms_sender="S")
            clock = ManualClock(datetime(2030, 6, 1, tzinfo=UTC))
            return Processor(store, registry, env, clock).run_until_idle().events
        finally:
            store.close()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        store = SqlStore(self.url)
        try:
            with store.transaction() as uow:
                [contact] = uow.find_contacts({IdentifierKind.email_id: "ann@example.com"})
                runs = uow.runs_for_contact(contact.id, active_only=False)
                messages = uow.messages_for_contact(contact.id)
        finally:
            store.close()
        if sql == "runs":
            return [(r.workflow_id, r.trigger_event_id) for r in runs]
        return [(m.workflow_id, m.subject) for m in messages]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shop:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "templates").mkdir()
    for name, text in WORKFLOWS.items():
        (tmp_path / "workflows" / name).write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "templates" / "back.email.html").write_text(BACK, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return Shop(f"sqlite:///{tmp_path / 'shop.db'}", tmp_path)


def test_history_starts_nothing_but_a_later_event_sees_it(shop: Shop, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "orders.jsonl", [body("order_completed")])

    result = invoke(path, "--database", shop.url)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "1 rows: 1 events stored as history (no workflow); refused 0; skipped 0"
    )
    assert shop.process() == 0  # nothing left for the engine: no `thanks` run
    shop.later_event("visited")
    assert shop.process() == 1
    assert shop.rows("runs")[0][0] == "back"
    assert shop.rows("messages") == [("back", "Welcome back")]


def test_with_trigger_the_workflows_process_the_imported_events(shop: Shop, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "orders.jsonl", [body("order_completed")])

    result = invoke(path, "--database", shop.url, "--trigger")

    assert result.exit_code == 0, result.output
    assert "1 events stored for the workflows to process" in result.stdout
    assert shop.process() == 1
    assert shop.rows("messages") == [("thanks", "Welcome back")]


def test_importing_a_file_twice_stores_each_event_once(shop: Shop, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "orders.jsonl", [body("order_completed"), body("visited")])
    invoke(path, "--database", shop.url)

    again = invoke(path, "--database", shop.url)

    assert again.exit_code == 0
    assert "0 events stored as history (no workflow), 2 already stored" in again.stdout


def test_refused_rows_are_listed_by_line_and_the_good_ones_imported(
    shop: Shop, tmp_path: Path
) -> None:
    csv = tmp_path / "log.csv"
    csv.write_bytes(
        b"\xef\xbb\xbf"
        + "\r\n".join(
            [
                HEADER,
                "2019-10-01 00:00:00 UTC,view,1,2,,,1.00,7,s",
                "yesterday,view,1,2,,,1.00,7,s",
                "2019-10-01 00:00:00 UTC,view,x,2,,,1.00,7,s",
                "2019-10-01 00:00:00 UTC,wishlist,1,2,,,1.00,7,s",
            ]
        ).encode()
    )

    result = invoke(
        str(csv), "--mapping", str(ROOT / "mappings" / "rees46.yaml"), "--database", shop.url
    )

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "4 rows: 1 events stored as history (no workflow); refused 2; skipped 1",
        "line 3: event_time: time data 'yesterday' does not match format '%Y-%m-%d %H:%M:%S UTC'",
        "line 4: product_id: invalid literal for int() with base 10: 'x'",
        "skipped 1: unmapped event 'wishlist'",
    ]


def test_a_line_that_is_not_utf8_and_a_short_row_are_refused_by_line_and_the_rest_imported(
    shop: Shop, tmp_path: Path
) -> None:
    csv = tmp_path / "log.csv"
    csv.write_bytes(
        b"\n".join(
            [
                HEADER.encode(),
                b"2019-10-01 00:00:00 UTC,view,1,2,,caf\xe9,1.00,7,s",
                b"2019-10-01 00:00:00 UTC,view,1,2",
                b"2019-10-01 00:00:00 UTC,view,1,2,,,1.00,7,s",
            ]
        )
    )

    result = invoke(
        str(csv), "--mapping", str(ROOT / "mappings" / "rees46.yaml"), "--database", shop.url
    )

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "3 rows: 1 events stored as history (no workflow); refused 2; skipped 0",
        "line 2: not UTF-8 at byte 38 of the line (0xe9)",
        "line 3: 4 cell(s), the header has 9",
    ]


@dataclass
class Daemon:
    url: str
    db_url: str

    def events(self) -> list[Event]:
        store = SqlStore(self.db_url)
        try:
            with store.transaction() as uow:
                events, _ = uow.list_events(limit=1000)
        finally:
            store.close()
        return sorted(events, key=lambda e: e.seq or 0)


@pytest.fixture
def daemon(shop: Shop) -> Iterator[Daemon]:
    """The HTTP app on a loopback socket (uvicorn in a thread) over the shop's SQLite file; its
    engine is `shop.process()`, which runs the shop's workflows over the same log."""
    db_url = shop.url
    store = SqlStore(db_url)
    store.migrate()
    key_store = SqlKeyStore(db_url)
    clock = ManualClock(T0)
    ingest = IngestService(store, clock)
    deps = HttpDeps(
        store=store,
        clock=clock,
        ingest=ingest,
        keys=KeyChecker(api_keys=[API_KEY], tracker_keys=[], lookup=key_store, clock=clock),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = Server(uvicorn.Config(create_app(deps), log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(timeout=30)
    yield Daemon(f"http://127.0.0.1:{port}", db_url)
    server.should_exit = True
    thread.join(timeout=30)
    store.close()
    key_store.close()


def test_into_a_running_daemon_rows_go_in_batches_and_refusals_come_back_by_line(
    daemon: Daemon, tmp_path: Path
) -> None:
    unknown_contact = {**body("visited"), "identifiers": {"contact_id": "424242"}}
    items: list[dict[str, Any] | str] = [
        body("order_completed", f"c{n}@example.com") for n in range(7)
    ]
    items[3] = unknown_contact  # valid here, refused by the daemon
    items[5] = "{oops"  # refused here, never sent
    path = jsonl(tmp_path / "log.jsonl", items)

    result = invoke(path, "--url", daemon.url, "--api-key", API_KEY)

    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[0] == (
        "7 rows: 5 events accepted by the daemon as history (no workflow); refused 2; skipped 0"
    )
    assert result.stdout.splitlines()[1].startswith("line 4: events[3].identifiers.contact_id")
    assert result.stdout.splitlines()[2].startswith("line 6: malformed JSON")
    stored = daemon.events()
    assert sorted(e.identifiers[IdentifierKind.email_id] for e in stored) == [
        f"c{n}@example.com" for n in (0, 1, 2, 4, 6)
    ]
    assert {e.source for e in stored} == {"api"}

    again = invoke(path, "--url", daemon.url, "--api-key", API_KEY)
    assert len(daemon.events()) == 5  # the same batches again: stored once
    assert again.exit_code == 1


def post_live(daemon: Daemon, name: str, email: str = "ann@example.com") -> int:
    """A live event from a client of the daemon: over its socket, no mode header."""
    live = {"event_name": name, "identifiers": {"email_id": email}}
    with httpx.Client(base_url=daemon.url, headers={"api-key": API_KEY}) as client:
        return client.post("/v3/events", json=live).status_code


def test_into_a_daemon_history_starts_nothing_but_a_later_live_event_sees_it(
    shop: Shop, daemon: Daemon, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "orders.jsonl", [body("order_completed")])

    result = invoke(path, "--url", daemon.url, "--api-key", API_KEY)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "1 rows: 1 events accepted by the daemon as history (no workflow); refused 0; skipped 0"
    ]
    assert shop.process() == 0  # nothing for the engine: no `thanks` run
    assert shop.rows("runs") == []
    assert post_live(daemon, "visited") == 204
    assert shop.process() == 1
    assert [workflow for workflow, _ in shop.rows("runs")] == ["back"]
    assert shop.rows("messages") == [("back", "Welcome back")]


def test_into_a_daemon_with_trigger_the_workflows_run(
    shop: Shop, daemon: Daemon, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "orders.jsonl", [body("order_completed")])

    result = invoke(path, "--url", daemon.url, "--api-key", API_KEY, "--trigger")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "1 rows: 1 events accepted by the daemon for the workflows to process; refused 0; skipped 0"
    ]
    assert shop.process() == 1
    assert shop.rows("messages") == [("thanks", "Welcome back")]


def test_importing_into_a_daemon_twice_stores_each_event_once_as_history(
    shop: Shop, daemon: Daemon, tmp_path: Path
) -> None:
    path = jsonl(tmp_path / "log.jsonl", [body("order_completed"), body("visited")])
    first = invoke(path, "--url", daemon.url, "--api-key", API_KEY)

    again = invoke(path, "--url", daemon.url, "--api-key", API_KEY)
    triggered = invoke(path, "--url", daemon.url, "--api-key", API_KEY, "--trigger")

    assert [r.exit_code for r in (first, again, triggered)] == [0, 0, 0]
    assert [e.name for e in daemon.events()] == ["order_completed", "visited"]
    assert shop.process() == 0  # stored once, as first stored: history
    assert shop.rows("runs") == []


def test_a_daemon_that_ignores_the_history_header_stops_the_import(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "log.jsonl", [body("visited")])
    seen: list[str | None] = []

    def older_daemon(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Tidings-Mode"))
        return httpx.Response(202, json={"message": "Batch accepted", "count": 1})

    with httpx.Client(transport=httpx.MockTransport(older_daemon)) as http:
        client = EventsClient("http://daemon.invalid", API_KEY, history=True, client=http)
        with pytest.raises(ImportRefusedError, match="without X-Tidings-Mode: history"):
            import_over_http(Path(path), None, client, load_settings(environ={}))
    assert seen == ["history"]


def test_a_bad_key_stops_the_import_with_the_daemons_answer(daemon: Daemon, tmp_path: Path) -> None:
    path = jsonl(tmp_path / "log.jsonl", [body("visited")])

    result = invoke(path, "--url", daemon.url, "--api-key", "wrong")

    assert result.exit_code == 2
    assert "answered 401" in " ".join(result.stderr.split())
    assert daemon.events() == []


def test_url_and_database_together_is_a_usage_error(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "log.jsonl", [body("visited")])

    result = invoke(path, "--url", "http://127.0.0.1:9", "--database", "sqlite:///x.db")

    assert result.exit_code == 2
    assert "give --url or --database, not both" in " ".join(result.stderr.split())
