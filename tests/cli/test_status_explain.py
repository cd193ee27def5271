"""`tidings status` and `tidings explain` over a real SQLite database the engine wrote."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tidings.adapters.clock import ManualClock
from tidings.adapters.file_clock import write_clock_file
from tidings.adapters.sql.store import SqlStore
from tidings.cli.main import app
from tidings.engine.core import Environment
from tidings.model.contacts import Channel, Contact
from tidings.model.events import Event, IdentifierKind
from tidings.service import shapes
from tidings.service.consent import unsubscribe
from tidings.service.ingest import IngestService
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry
from tidings.service.validation import parse_json

T0 = datetime(2030, 2, 4, 9, 0, tzinfo=UTC)

CART = """
    id: cart
    trigger:
      event: cart_updated
    key: "{{ event.properties.cart_id }}"
    exit:
      - event: order_completed
        if: "event.properties.cart_id == run.key"
        reason: bought
    steps:
      - wait: 1h
      - send_email: {template: cart}
    """
WELCOME = """
    id: welcome
    trigger:
      event: signed_up
    steps:
      - send_email: {template: welcome}
    """
TEMPLATES = {
    "cart.email.html": '---\nsubject: "Cart {{ params.cart_id }}"\n---\n<p>Back?</p>\n',
    "welcome.email.html": '---\nsubject: "Welcome"\n---\n<p>Hi</p>\n',
}


@pytest.fixture
def database(tmp_path: Path) -> dict[str, str]:
    """A database where Ann's cart K1 ended by a purchase, K2 waits, and Bob, unsubscribed,
    signed up; the environment `tidings` needs to read it at T0 + 30 minutes."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "workflows" / "cart.yaml").write_text(textwrap.dedent(CART), encoding="utf-8")
    (tmp_path / "workflows" / "welcome.yaml").write_text(textwrap.dedent(WELCOME), encoding="utf-8")
    for name, text in TEMPLATES.items():
        (tmp_path / "templates" / name).write_text(text, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'tidings.db'}"
    store = SqlStore(url)
    store.migrate()
    clock = ManualClock(T0)
    registry, loaded = WorkflowRegistry.from_directory(
        tmp_path / "workflows", tmp_path / "templates"
    )
    assert loaded.problems == []
    registry.record_versions(store)
    env = Environment(templates=registry.catalog, mail_from="shop@example.com", sms_sender="Shop")
    processor = Processor(store, registry, env, clock)
    seen = 0

    def event(name: str, contact: str, minutes: int, **props: str) -> None:
        nonlocal seen
        seen += 1
        clock.set(T0 + timedelta(minutes=minutes))
        with store.transaction() as uow:
            uow.add_event(
                Event(
                    id=f"e{seen}",
                    name=name,
                    identifiers={IdentifierKind.email_id: f"{contact}@example.com"},
                    occurred_at=clock.now(),
                    received_at=clock.now(),
                    properties=props,
                    contact_id=contact,
                )
            )
        processor.run_until_idle()

    with store.transaction() as uow:
        for name in ("ann", "bob"):
            uow.save_contact(
                Contact(
                    id=name,
                    identifiers={IdentifierKind.email_id: f"{name}@example.com"},
                    created_at=T0,
                    updated_at=T0,
                )
            )
    unsubscribe(store, clock, "bob", Channel.email, source="link")
    event("cart_updated", "ann", 0, cart_id="K1")
    event("order_completed", "ann", 10, cart_id="K1")
    event("cart_updated", "ann", 20, cart_id="K2")
    event("signed_up", "ann", 20)
    event("signed_up", "bob", 25)
    store.close()
    write_clock_file(tmp_path / "clock", T0 + timedelta(minutes=30))
    return {
        "TIDINGS_DATABASE_URL": url,
        "TIDINGS_CLOCK_FILE": str(tmp_path / "clock"),
        "FORCE_COLOR": "",
        "COLUMNS": "200",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner(env=env).invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_status_counts_runs_per_workflow_status_and_step_with_the_next_due_time(
    database: dict[str, str],
) -> None:
    code, out, _ = run(database, "status")

    assert code == 0
    rows = [" ".join(line.replace("│", " ").split()) for line in out.splitlines()]
    assert "cart waiting 0 1 2030-02-04 10:20:00 UTC (in 50m)" in rows
    assert "cart finished 1" in rows
    assert "cart total 2 1 in flight" in rows
    assert "welcome finished 2" in rows
    assert "welcome total 2 0 in flight" in rows


def test_explain_by_email_shows_matches_waits_exits_sends_and_what_is_next(
    database: dict[str, str],
) -> None:
    code, out, _ = run(database, "explain", "ann@example.com")

    assert code == 0
    assert out.startswith("Contact ann (email_id=ann@example.com)\n")
    assert "trigger_matched cart_updated matched the trigger of cart (key 'K1')" in out
    assert "waiting until 2030-02-04T10:00:00+00:00 [step 0]" in out
    assert "exited          run exited_goal: bought" in out
    assert "send            email 'welcome' to ann@example.com queued [step 0]" in out
    assert "email 'Welcome' to ann@example.com: pending, 0 attempt(s)" in out
    next_part = out.split("Next:\n")[1].splitlines()
    assert len(next_part) == 2  # the pending welcome email, then the waiting cart
    assert next_part[1].startswith("  2030-02-04 10:20:00 UTC (in 50m)  cart run ")
    assert next_part[1].endswith(" continues after step 0")


def test_explain_one_workflow_and_a_skip_for_an_unsubscribed_contact(
    database: dict[str, str],
) -> None:
    code, out, _ = run(database, "explain", "bob", "welcome")

    assert code == 0
    assert "Workflow cart" not in out
    assert "email 'welcome' skipped: unsubscribed from email" in out
    assert "unsubscribed from: email" in out
    assert "Next: nothing is waiting" in out


def test_explain_shows_an_identifier_that_pointed_at_another_contact_and_the_rule(
    database: dict[str, str],
) -> None:
    # Given Carl (by email) and Dora (by ext_id) exist, and an event names Carl's email
    # together with Dora's ext_id
    store = SqlStore(database["TIDINGS_DATABASE_URL"])
    ids = iter(["101", "102"])
    service = IngestService(store, ManualClock(T0), new_contact_id=lambda: next(ids))
    for identifiers in (
        {"email_id": "carl@example.com"},
        {"ext_id": "dora-1"},
        {"email_id": "carl@example.com", "ext_id": "dora-1"},
    ):
        raw = json.dumps({"event_name": "page_viewed", "identifiers": identifiers}).encode()
        event = shapes.brevo_event(parse_json(raw), now=T0, limits=service.limits)
        service.ingest_now(service.submission([event], key_id="k", body=raw))
    with store.transaction() as uow:
        [conflicted] = [e for e in uow.contact_events("101") if e.conflicts]
    store.close()

    # When the operator asks about Carl
    code, out, _ = run(database, "explain", "carl@example.com")

    # Then the trace says which identifier pointed at whom, and which rule kept the event
    assert code == 0
    assert out.startswith("Contact 101 (email_id=carl@example.com)\n")
    assert (
        "General\n"
        f"  2030-02-04 09:00:00 UTC  conflict        event page_viewed ({conflicted.id}): "
        "ext_id 'dora-1' not attached (belongs to contact 102); the event was recorded on "
        "contact 101, which holds its first known identifier (email_id 'carl@example.com'); "
        "nothing was moved or merged\n"
    ) in out
    code, dora, _ = run(database, "explain", "dora-1")
    assert (code, dora.startswith("Contact 102 (ext_id=dora-1)\n")) == (0, True)
    assert "conflict" not in dora  # Dora keeps her ext_id; the event is not hers


def test_explain_an_unknown_contact_exits_1(database: dict[str, str]) -> None:
    code, _, err = run(database, "explain", "nobody@example.com")

    assert code == 1
    assert err == "no contact matches 'nobody@example.com'\n"


def test_status_of_an_empty_database_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store = SqlStore(url)
    store.migrate()
    store.close()

    code, out, _ = run({"TIDINGS_DATABASE_URL": url}, "status")

    assert (code, out) == (0, "No runs yet.\n")
