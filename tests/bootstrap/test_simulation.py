"""`simulate` on the real REES46 sample, checked against a computation written here.

How "the same cart" and its exits map onto the REES46 columns (mappings/rees46.yaml and
workflows/abandoned_cart.yaml): a contact is a `user_id`; each `cart` row is a `cart_updated`
event whose cart is everything carted so far in that `user_session` (so `cart_id` is the
session and `total` the sum of those prices); the purchase rows of a session form one
`order_completed` per 5-minute group, dated at the group's last row, with `cart_id` = the
session. The workflow runs once per (user, session): a cart row with a total above 0 starts it
over (mode restart), an order of the same session ends it (exit goal), so does a cart at 0 (an
emptied cart; the sample has no `remove_from_cart` rows, so only a session whose every carted
price is 0 has one, and it has no run to end), otherwise the email goes
one hour after the session's last cart row and the SMS step a day later. At the same second a
cart row comes before an order (orders are complete only after their 5 minutes).

Each such order has its own `order_id` (the session and the order's first row time), so the
order-confirmation workflow (one run per `order_id`, never re-entered) sends one receipt per
order: a session with two orders more than 5 minutes apart gets two.
"""

from __future__ import annotations

import csv
import email
import email.message
import email.policy
import shutil
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from tidings.bootstrap.simulation import SimulationRequest, SimulationResult, read_file, simulate
from tidings.compile.loader import load_workflow
from tidings.compile.templates import TemplateCatalog
from tidings.model.workflow import Mode, SendEmailStep, SendSmsStep, WaitStep
from tidings.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
REES46 = ROOT.parent / "shared" / "data" / "rees46_multicategory_2019-10-01_head.csv"
DEMO_MAPPING = ROOT / "mappings" / "rees46_demo.yaml"
WAIT = timedelta(hours=1)
ORDER_WINDOW = timedelta(minutes=5)

needs_sample = pytest.mark.skipif(not REES46.exists(), reason=f"{REES46} is not there")


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)


@dataclass
class Expected:
    """Abandoned-cart figures computed from the CSV rows alone."""

    started: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    emails: list[tuple[str, datetime]] = field(default_factory=list)  # (user_id, when)
    zero_carts: int = 0  # cart rows whose cart totals 0: the trigger's condition is false
    receipts: Counter[str] = field(default_factory=Counter)  # user_id -> orders placed


def expected_abandoned_carts(path: Path) -> Expected:
    """Walk each (user, session) through the workflow's rules (see the module docstring)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sessions: dict[tuple[str, str], list[tuple[datetime, int, str]]] = defaultdict(list)
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    order_start: dict[tuple[str, str], datetime] = {}
    for row in rows:
        key, at = (row["user_id"], row["user_session"]), _time(row["event_time"])
        if row["event_type"] == "cart":
            totals[key] += Decimal(row["price"])
            sessions[key].append((at, 0, "cart" if totals[key] > 0 else "cart at 0"))
        elif row["event_type"] == "purchase":
            if key not in order_start or at - order_start[key] > ORDER_WINDOW:
                order_start[key] = at
                sessions[key].append((at, 1, "order"))
            else:  # the same order: it is dated at its last row
                last = max(i for i, e in enumerate(sessions[key]) if e[2] == "order")
                sessions[key][last] = (at, 1, "order")
    result = Expected()
    for (user, _), events in sessions.items():
        result.receipts.update(user for _, _, kind in events if kind == "order")
    for (user, _), events in sessions.items():
        due: datetime | None = None  # the hour's end while the run waits for it
        started: datetime | None = None  # when the active run was triggered
        for at, _, kind in sorted(events):
            if due is not None and due < at:  # the hour ran out before this event
                result.emails.append((user, due))
                due = None  # now waiting a day for the SMS step (which has no phone to use)
            if kind == "cart":
                if started is not None:
                    result.outcomes["restarted"] += 1
                result.started += 1
                started, due = at, at + WAIT
            elif kind == "cart at 0":
                result.zero_carts += 1
                if started is not None:  # emptied: the exit goal ends the waiting run
                    result.outcomes["exited_goal"] += 1
                    started = due = None
            elif kind == "order" and started is not None and at >= started:
                result.outcomes["exited_goal"] += 1
                started = due = None
        if due is not None:
            result.emails.append((user, due))
        if started is not None:
            result.outcomes["finished"] += 1  # the day passes, the SMS is skipped, the end
    return result


def _cart_and_receipt_workflows(tmp_path: Path) -> Path:
    """The bundled abandoned-cart and order-confirmation workflows, checked to still say what
    the test models."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    source = ROOT / "workflows" / "abandoned_cart.yaml"
    shutil.copy(source, folder)
    receipts = ROOT / "workflows" / "order_confirmation.yaml"
    shutil.copy(receipts, folder)
    catalog = TemplateCatalog.load(ROOT / "templates")
    receipt = load_workflow(receipts, catalog).workflow
    assert receipt is not None
    assert receipt.definition.key == "{{ event.properties.order_id }}"
    assert receipt.definition.trigger.event == ["order_completed"]
    assert receipt.definition.reentry.allowed is False
    loaded = load_workflow(source, catalog)
    assert loaded.workflow is not None, [str(p) for p in loaded.problems]
    definition = loaded.workflow.definition
    steps = definition.steps
    assert (definition.trigger.event, definition.mode) == (["cart_updated"], Mode.restart)
    assert definition.key is not None and "cart_id" in definition.key
    assert [goal.event for goal in definition.exit] == [["order_completed"], ["cart_updated"]]
    assert "total <= 0" in (definition.exit[1].if_ or [""])[0]  # the cart was emptied
    assert [type(step) for step in steps] == [WaitStep, SendEmailStep, WaitStep, SendSmsStep]
    assert isinstance(steps[0], WaitStep) and steps[0].wait.for_ == WAIT
    return folder


def _run(tmp_path: Path, events: Path, workflows: Path, name: str) -> SimulationResult:
    request = SimulationRequest(
        events=events,
        mapping=DEMO_MAPPING,
        workflows_dir=workflows,
        templates_dir=ROOT / "templates",
        outbox_dir=tmp_path / f"outbox-{name}",
        database_url=f"sqlite:///{tmp_path / f'{name}.db'}",
    )
    return simulate(request, load_settings(environ={}), read_file(request))


@needs_sample
def test_the_abandoned_carts_of_the_rees46_sample_are_the_ones_computed_from_its_rows(
    tmp_path: Path,
) -> None:
    expected = expected_abandoned_carts(REES46)

    result = _run(tmp_path, REES46, _cart_and_receipt_workflows(tmp_path), "rees46")

    figures, receipts = result.report.workflows
    assert (figures.id, receipts.id) == ("abandoned_cart", "order_confirmation")
    assert figures.runs_started == expected.started
    assert figures.outcomes == dict(expected.outcomes)
    assert figures.messages == len(expected.emails)
    with sqlite3.connect(tmp_path / "rees46.db") as db:
        sent = db.execute(
            'SELECT m."to", m.created_at, m.status FROM messages m'
            " WHERE m.workflow_id = 'abandoned_cart' ORDER BY m.created_at, m.\"to\""
        ).fetchall()
    assert sorted(
        (to, datetime.fromisoformat(at).replace(tzinfo=UTC)) for to, at, _ in sent
    ) == sorted((f"user{user}@example.invalid", when) for user, when in expected.emails)
    assert {status for _, _, status in sent} == {"sent"}
    outbox = list((tmp_path / "outbox-rees46").glob("*.eml"))
    assert len(outbox) == len(expected.emails) + expected.receipts.total()
    assert result.report.totals.refused == 0 and result.report.totals.skipped == 0
    skips = {"SMS 'abandoned_cart' skipped: no phone number": expected.outcomes["finished"]}
    if expected.zero_carts:
        skips["not started: a trigger condition is false"] = expected.zero_carts
    assert figures.skips == skips
    # Every order gets its receipt, the second order of a session too.
    assert receipts.runs_started == receipts.messages == expected.receipts.total()
    assert receipts.skips == {}
    with sqlite3.connect(tmp_path / "rees46.db") as db:
        sent_to = db.execute(
            "SELECT m.\"to\" FROM messages m WHERE m.workflow_id = 'order_confirmation'"
        ).fetchall()
    assert Counter(to for (to,) in sent_to) == Counter(
        {f"user{user}@example.invalid": count for user, count in expected.receipts.items()}
    )


@needs_sample
def test_the_same_log_gives_the_same_report_byte_for_byte(tmp_path: Path) -> None:
    head = tmp_path / "head.csv"
    with REES46.open(encoding="utf-8") as source:
        head.write_text("".join(source.readline() for _ in range(1500)), encoding="utf-8")

    first = _run(tmp_path, head, ROOT / "workflows", "first")
    second = _run(tmp_path, head, ROOT / "workflows", "second")

    assert first.report.to_json() == second.report.to_json()
    assert first.report.totals.messages > 0
    names = sorted(p.name for p in (tmp_path / "outbox-first").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "outbox-second").iterdir())
    assert len(names) == first.outbox_files == first.report.totals.messages


def test_the_demo_mapping_is_the_rees46_mapping_plus_placeholder_addresses() -> None:
    from tidings.service.csv_mapping import load_mapping

    base = load_mapping(ROOT / "mappings" / "rees46.yaml")
    demo = load_mapping(DEMO_MAPPING)

    assert demo.model_copy(update={"contact_properties": {}}) == base
    assert list(demo.contact_properties) == ["EMAIL"]
    assert "example.invalid" in (demo.contact_properties["EMAIL"].template or "")


@needs_sample
@pytest.mark.postgres
def test_a_replay_into_postgresql_reports_what_the_temporary_sqlite_replay_reports(
    tmp_path: Path, postgres_url: str
) -> None:
    head = tmp_path / "head.csv"
    with REES46.open(encoding="utf-8") as source:
        head.write_text("".join(source.readline() for _ in range(1200)), encoding="utf-8")
    settings = load_settings(environ={})

    def replay(database_url: str | None, name: str) -> str:
        request = SimulationRequest(
            events=head,
            mapping=DEMO_MAPPING,
            workflows_dir=ROOT / "workflows",
            templates_dir=ROOT / "templates",
            outbox_dir=tmp_path / name,
            database_url=database_url,
        )
        return simulate(request, settings, read_file(request)).report.to_json()

    assert replay(postgres_url, "pg") == replay(None, "sqlite")


HEADER = (
    "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
)


def _eml_texts(outbox: Path) -> list[str]:
    """The plain-text part of every email written to the outbox, in file name order."""
    texts = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        texts.append(body.get_content())
    return texts


def test_an_item_removed_from_the_cart_is_not_in_the_cart_email(tmp_path: Path) -> None:
    log = tmp_path / "carts.csv"
    rows = [
        "2019-10-01 10:00:00 UTC,cart,1,20,,alpha,80.00,7,s1",
        "2019-10-01 10:01:00 UTC,cart,2,20,,beta,20.00,7,s1",
        "2019-10-01 10:02:00 UTC,cart,3,20,,gamma,20.00,7,s1",
        "2019-10-01 10:03:00 UTC,remove_from_cart,3,20,,gamma,20.00,7,s1",
    ]
    log.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")

    result = _run(tmp_path, log, _cart_and_receipt_workflows(tmp_path), "removed")

    assert result.report.totals.refused == 0
    [text] = _eml_texts(tmp_path / "outbox-removed")
    assert "Alpha Item" in text and "Beta Item" in text
    assert "Gamma Item" not in text
    assert "$100.00" in text and "$120.00" not in text and "$140.00" not in text


def test_two_orders_in_one_session_get_two_receipts(tmp_path: Path) -> None:
    log = tmp_path / "orders.csv"
    rows = [
        "2019-10-01 10:00:00 UTC,purchase,1,20,,alpha,80.00,7,s1",
        "2019-10-01 10:20:00 UTC,purchase,2,20,,beta,20.00,7,s1",
    ]
    log.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")

    result = _run(tmp_path, log, _cart_and_receipt_workflows(tmp_path), "orders")

    receipts = {w.id: w for w in result.report.workflows}["order_confirmation"]
    assert (receipts.runs_started, receipts.messages, receipts.skips) == (2, 2, {})
    texts = _eml_texts(tmp_path / "outbox-orders")
    assert sorted(("Alpha Item" in t, "Beta Item" in t) for t in texts) == [
        (False, True),
        (True, False),
    ]


def test_a_cart_emptied_again_gets_no_reminder(tmp_path: Path) -> None:
    log = tmp_path / "emptied.csv"
    rows = [
        "2019-10-01 10:00:00 UTC,cart,1,20,,alpha,80.00,7,s1",
        "2019-10-01 10:05:00 UTC,remove_from_cart,1,20,,alpha,80.00,7,s1",
    ]
    log.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")

    result = _run(tmp_path, log, _cart_and_receipt_workflows(tmp_path), "emptied")

    carts = {w.id: w for w in result.report.workflows}["abandoned_cart"]
    assert (carts.runs_started, carts.outcomes, carts.messages) == (1, {"exited_goal": 1}, 0)
    assert _eml_texts(tmp_path / "outbox-emptied") == []


def test_a_cart_updated_between_two_purchases_of_one_order_gets_no_reminder(
    tmp_path: Path,
) -> None:
    # As user 552408931 of the sample: buys a phone, carts a second, buys it 44 s later.
    log = tmp_path / "between.csv"
    rows = [
        "2019-10-01 02:27:23 UTC,cart,1,20,,alpha,975.57,7,s1",
        "2019-10-01 02:28:40 UTC,purchase,1,20,,alpha,975.57,7,s1",
        "2019-10-01 02:32:15 UTC,cart,2,20,,beta,975.57,7,s1",
        "2019-10-01 02:32:59 UTC,purchase,2,20,,beta,975.57,7,s1",
    ]
    log.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")

    result = _run(tmp_path, log, _cart_and_receipt_workflows(tmp_path), "between")

    workflows = {w.id: w for w in result.report.workflows}
    carts, receipts = workflows["abandoned_cart"], workflows["order_confirmation"]
    assert (carts.runs_started, carts.messages) == (2, 0)
    assert carts.outcomes == {"restarted": 1, "exited_goal": 1}
    assert (receipts.runs_started, receipts.messages) == (1, 1)
    [receipt] = _eml_texts(tmp_path / "outbox-between")
    assert "Alpha Item" in receipt and "Beta Item" in receipt
