"""Recall: a queued marketing message is not delivered once its run exited or consent went.

The shipped workflows (`workflows/`, `templates/`) over every store, the engine and the delivery
worker driven by a ManualClock, a real SMTP server. Given a cart in the evening, the reminder is
queued for after the quiet hours (21:00-08:00 Paris); what happens meanwhile decides whether the
shop's customer receives it at 08:00. `last_send` is a shop whose cart workflow ends with the
email: its run is `finished` once the email is queued, and only its exit goals can recall it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from support.smtp_server import SmtpTestServer
from tidings.adapters.clock import ManualClock
from tidings.adapters.metrics import MeteredStore, Metrics
from tidings.adapters.outbox_dir import OutboxDirSender
from tidings.adapters.smtp import SmtpSender
from tidings.adapters.smtp_url import parse_smtp_url
from tidings.engine.core import Environment
from tidings.model.contacts import Channel, Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Outcome
from tidings.model.trace import TraceKind
from tidings.ports import EmailSender, Store
from tidings.service.consent import unsubscribe
from tidings.service.delivery import DeliveryStats, DeliveryWorker
from tidings.service.explain import explain, read_report
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry

ROOT = Path(__file__).resolve().parents[2]
PARIS = ZoneInfo("Europe/Paris")
EVENING = datetime(2030, 1, 15, 20, 30, tzinfo=PARIS)
MORNING = datetime(2030, 1, 16, 8, 0, tzinfo=PARIS)  # the end of the quiet hours
EMAIL = "camille.durand@example.com"
RECEIPT = "Order A-10428 confirmed"  # the transactional order confirmation's subject


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "examples" / name).read_text(encoding="utf-8"))
    return data


CART = example("abandoned_cart/event.json")["event_properties"]
ORDER = example("order_confirmation/event.json")["event_properties"]


@dataclass
class Shop:
    """The shop's Tidings: store (metered), engine, delivery worker, and the SMTP relay."""

    store: Store
    metrics: Metrics
    clock: ManualClock
    processor: Processor
    worker: DeliveryWorker
    smtp: SmtpTestServer
    sender: SmtpSender
    registry: WorkflowRegistry
    env: Environment
    seen: int = 0

    def event(self, name: str, **properties: Any) -> None:
        """An event from the shop, now, then the engine applies it."""
        self.seen += 1
        with self.store.transaction() as uow:
            uow.add_event(
                Event(
                    id=f"e{self.seen}",
                    name=name,
                    identifiers={IdentifierKind.email_id: EMAIL},
                    occurred_at=self.clock.now(),
                    received_at=self.clock.now(),
                    properties=properties,
                    contact_id="c1",
                )
            )
        self.processor.run_until_idle()

    def at(self, when: datetime) -> DeliveryStats:
        """Move the clock to `when`, let the engine fire what is due, deliver what is due."""
        self.clock.set(when)
        self.processor.run_until_idle()
        return asyncio.run(self._deliver())

    async def _deliver(self) -> DeliveryStats:
        async with self.sender:
            return await self.worker.drain()

    def drain_one_at_a_time(self, email: EmailSender) -> DeliveryStats:
        """Deliver what is due, one send at a time, through `email` (which may act while a
        message is being sent, then hand it to the relay)."""
        worker = DeliveryWorker(
            self.store,
            email,
            OutboxDirSender(Path("/nonexistent/outbox-not-used")),
            self.clock,
            registry=self.registry,
            env=self.env,
            concurrency=1,
        )

        async def deliver() -> DeliveryStats:
            async with self.sender:
                return await worker.drain()

        return asyncio.run(deliver())

    def messages(self) -> dict[str, Message]:
        """The outbox by workflow."""
        with self.store.transaction() as uow:
            return {m.workflow_id: m for m in uow.messages_for_contact("c1")}

    def received(self) -> list[str]:
        """The subjects the customer's mailbox received."""
        return [str(r.message()["Subject"]) for r in self.smtp.received]


@pytest.fixture
def shop(store: Store) -> Iterator[Shop]:
    with open_shop(store, ROOT / "workflows") as opened:
        yield opened


LAST_SEND = """\
id: cart_reminder
name: One cart reminder, the run's last step
trigger:
  event: cart_updated
  if: "event.properties.total > 0"
key: "{{ event.properties.cart_id }}"
mode: restart
exit:
  - event: order_completed
    if: "event.properties.cart_id == run.key"
    reason: ordered
quiet_hours: {start: "21:00", end: "08:00"}
steps:
  - wait: 1h
  - send_email: {template: abandoned_cart}
"""


@pytest.fixture
def last_send(store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Shop]:
    """The receipt and a cart workflow whose last step is the reminder (then `request.param`,
    e.g. an `exit` step)."""
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    shutil.copy(ROOT / "workflows" / "order_confirmation.yaml", workflows)
    source = LAST_SEND + getattr(request, "param", "")
    (workflows / "cart_reminder.yaml").write_text(source, encoding="utf-8")
    with open_shop(store, workflows) as opened:
        yield opened


@contextmanager
def open_shop(store: Store, workflows: Path) -> Iterator[Shop]:
    """The shop over these workflows and the shipped templates."""
    registry, loaded = WorkflowRegistry.from_directory(workflows, ROOT / "templates")
    assert loaded.problems == []
    metrics = Metrics()
    metered = MeteredStore(store, metrics)
    registry.record_versions(metered)
    clock = ManualClock(EVENING)
    env = Environment(
        templates=registry.catalog,
        mail_from="Shop <shop@example.com>",
        sms_sender="Shop",
        unsubscribe_url=lambda cid, ch: f"https://shop.test/u/{cid}/{ch}",
    )
    with store.transaction() as uow:
        uow.save_contact(
            Contact(
                id="c1",
                identifiers={IdentifierKind.email_id: EMAIL},
                attributes={"FIRSTNAME": "Camille"},
                timezone="Europe/Paris",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    with SmtpTestServer() as smtp:
        sender = SmtpSender(parse_smtp_url(f"smtp://{smtp.host}:{smtp.port}?helo=shop.test"))
        unused = OutboxDirSender(Path("/nonexistent/outbox-not-used"))
        worker = DeliveryWorker(metered, sender, unused, clock, registry=registry, env=env)
        processor = Processor(metered, registry, env, clock)
        yield Shop(metered, metrics, clock, processor, worker, smtp, sender, registry, env)


def queue_the_cart_reminder(shop: Shop) -> None:
    """Given a cart at 20:30: at 21:30 its email is queued, deferred to 08:00."""
    shop.event("cart_updated", **CART)
    assert shop.at(EVENING + timedelta(hours=1)) == DeliveryStats()
    reminder = shop.messages()["abandoned_cart"]
    assert (reminder.status, reminder.not_before) == (MessageStatus.pending, MORNING)


def test_an_order_in_the_quiet_hours_cancels_the_queued_reminder(shop: Shop) -> None:
    queue_the_cart_reminder(shop)

    shop.clock.set(datetime(2030, 1, 15, 23, 0, tzinfo=PARIS))
    shop.event("order_completed", **ORDER)
    night = shop.at(shop.clock.now())
    morning = shop.at(MORNING)

    assert night == DeliveryStats(claimed=1, sent=1)  # the receipt goes at once
    assert morning == DeliveryStats(claimed=1, cancelled=1)
    assert shop.received() == [RECEIPT]
    reminder = shop.messages()["abandoned_cart"]
    assert (reminder.status, reminder.last_error) == (
        MessageStatus.cancelled,
        "run exited_goal: ordered",
    )
    assert (reminder.attempts, reminder.sent_at) == (0, None)
    with shop.store.transaction() as uow:
        trace = [e for e in uow.trace_for_contact("c1") if e.data.get("key") == reminder.key]
    assert [e.kind for e in trace] == [TraceKind.send, TraceKind.skip]  # queued, then recalled
    assert (trace[1].at, trace[1].data["reason"]) == (MORNING, "exited_goal")
    assert shop.metrics.value("tidings_messages_cancelled_total", channel="email") == 1
    assert shop.metrics.value("tidings_sends_skipped_total", workflow="abandoned_cart") == 1
    assert shop.worker.next_due_at() is None


def test_explain_says_the_reminder_was_cancelled_and_why(shop: Shop) -> None:
    queue_the_cart_reminder(shop)
    shop.clock.set(datetime(2030, 1, 15, 23, 0, tzinfo=PARIS))
    shop.event("order_completed", **ORDER)
    shop.at(MORNING)

    report = read_report(shop.store, EMAIL, "abandoned_cart")
    assert report is not None
    text = explain(report, MORNING)

    assert (
        f"skip            email to {EMAIL} skipped: run exited_goal: ordered after it was queued"
        " [step 1]"
    ) in text
    assert (
        f"email 'Camille, your cart is waiting for you' to {EMAIL}: cancelled, not sent:"
        " run exited_goal: ordered"
    ) in text
    assert "Next: nothing is waiting" in text


def test_an_unsubscribe_after_the_reminder_was_queued_cancels_it(shop: Shop) -> None:
    queue_the_cart_reminder(shop)
    shop.clock.set(datetime(2030, 1, 15, 22, 0, tzinfo=PARIS))
    unsubscribe(shop.store, shop.clock, "c1", Channel.email, source="link")

    assert shop.at(MORNING) == DeliveryStats(claimed=1, cancelled=1)
    assert shop.received() == []
    reminder = shop.messages()["abandoned_cart"]
    assert (reminder.status, reminder.last_error) == (
        MessageStatus.cancelled,
        "unsubscribed from email",
    )


def test_a_cart_updated_again_cancels_the_old_reminder_and_sends_the_new_one(shop: Shop) -> None:
    queue_the_cart_reminder(shop)
    shop.clock.set(datetime(2030, 1, 15, 23, 0, tzinfo=PARIS))
    shop.event("cart_updated", **(CART | {"total": 400}))  # mode restart: a new run

    assert shop.at(MORNING) == DeliveryStats(claimed=2, sent=1, cancelled=1)
    with shop.store.transaction() as uow:
        old, new = uow.messages_for_contact("c1")
        runs = {r.id: r for r in uow.runs_for_contact("c1", active_only=False)}
    assert (old.status, old.last_error) == (
        MessageStatus.cancelled,
        "run restarted: restarted by cart_updated (e2)",
    )
    assert runs[old.run_id].outcome is Outcome.restarted
    assert new.status is MessageStatus.sent
    [mail] = shop.smtp.received
    assert "400" in mail.data.decode()


def test_a_message_waiting_out_smtp_retries_is_cancelled_by_the_order(shop: Shop) -> None:
    shop.clock.set(datetime(2030, 1, 15, 10, 0, tzinfo=PARIS))
    shop.event("cart_updated", **CART)
    shop.smtp.refuse(EMAIL, "451 4.7.1 Try again later", times=1)
    assert shop.at(shop.clock.now() + timedelta(hours=1)) == DeliveryStats(claimed=1, retrying=1)

    shop.event("order_completed", **ORDER)  # the receipt goes through on the next round
    retry = shop.messages()["abandoned_cart"].next_attempt_at
    assert retry is not None
    stats = shop.at(retry)

    assert stats == DeliveryStats(claimed=2, sent=1, cancelled=1)
    assert shop.received() == [RECEIPT]
    reminder = shop.messages()["abandoned_cart"]
    assert (reminder.status, reminder.attempts) == (MessageStatus.cancelled, 1)


def test_a_receipt_is_sent_even_after_an_unsubscribe_or_a_goal(shop: Shop) -> None:
    shop.smtp.refuse(EMAIL, "451 4.7.1 Try again later", times=1)
    shop.event("order_completed", **ORDER)
    assert shop.at(shop.clock.now()) == DeliveryStats(claimed=1, retrying=1)
    unsubscribe(shop.store, shop.clock, "c1", Channel.email, source="link")

    assert shop.at(shop.clock.now() + timedelta(hours=1)) == DeliveryStats(claimed=1, sent=1)
    assert shop.received() == [RECEIPT]


def queue_the_last_step_reminder(shop: Shop) -> None:
    """Given a cart at 20:30: at 21:30 the run ends with its email queued, deferred to 08:00."""
    shop.event("cart_updated", **CART)
    assert shop.at(EVENING + timedelta(hours=1)) == DeliveryStats()
    reminder = shop.messages()["cart_reminder"]
    assert (reminder.status, reminder.not_before) == (MessageStatus.pending, MORNING)
    with shop.store.transaction() as uow:
        run = uow.get_run(reminder.run_id)
    assert run is not None and run.outcome in (Outcome.finished, Outcome.exited_step)


@pytest.mark.parametrize(
    "last_send", ["", "  - exit: reminded\n"], ids=["finished", "exit_step"], indirect=True
)
def test_an_order_after_the_run_finished_cancels_its_queued_last_email(last_send: Shop) -> None:
    queue_the_last_step_reminder(last_send)

    last_send.clock.set(datetime(2030, 1, 15, 23, 0, tzinfo=PARIS))
    last_send.event("order_completed", **ORDER)  # e2
    night = last_send.at(last_send.clock.now())
    morning = last_send.at(MORNING)

    assert night == DeliveryStats(claimed=1, sent=1)  # the receipt
    assert morning == DeliveryStats(claimed=1, cancelled=1)
    assert last_send.received() == [RECEIPT]
    reminder = last_send.messages()["cart_reminder"]
    assert (reminder.status, reminder.last_error, reminder.sent_at) == (
        MessageStatus.cancelled,
        "exit goal met by order_completed (e2)",
        None,
    )
    with last_send.store.transaction() as uow:
        trace = [e for e in uow.trace_for_contact("c1") if e.data.get("key") == reminder.key]
    assert [e.kind for e in trace] == [TraceKind.send, TraceKind.skip]
    assert (trace[1].at, trace[1].data["reason"]) == (MORNING, "exit_goal")
    assert last_send.metrics.value("tidings_messages_cancelled_total", channel="email") == 1
    assert last_send.metrics.value("tidings_sends_skipped_total", workflow="cart_reminder") == 1

    report = read_report(last_send.store, EMAIL, "cart_reminder")
    assert report is not None
    text = explain(report, MORNING)
    assert (
        f"email to {EMAIL} skipped: exit goal met by order_completed (e2) after it was queued"
    ) in text
    assert (
        f"email 'Camille, your cart is waiting for you' to {EMAIL}: cancelled, not sent:"
        " exit goal met by order_completed (e2)"
    ) in text


def test_an_order_during_smtp_retries_cancels_a_finished_runs_email(last_send: Shop) -> None:
    last_send.clock.set(datetime(2030, 1, 15, 10, 0, tzinfo=PARIS))
    last_send.event("cart_updated", **CART)
    last_send.smtp.refuse(EMAIL, "451 4.7.1 Try again later", times=1)
    later = last_send.clock.now() + timedelta(hours=1)
    assert last_send.at(later) == DeliveryStats(claimed=1, retrying=1)

    last_send.event("order_completed", **ORDER)
    retry = last_send.messages()["cart_reminder"].next_attempt_at
    assert retry is not None
    stats = last_send.at(retry)

    assert stats == DeliveryStats(claimed=2, sent=1, cancelled=1)
    assert last_send.received() == [RECEIPT]
    reminder = last_send.messages()["cart_reminder"]
    assert (reminder.status, reminder.attempts, reminder.last_error) == (
        MessageStatus.cancelled,
        1,
        "exit goal met by order_completed (e2)",
    )


def test_an_order_for_another_cart_does_not_cancel_it(last_send: Shop) -> None:
    queue_the_last_step_reminder(last_send)

    last_send.clock.set(datetime(2030, 1, 15, 23, 0, tzinfo=PARIS))
    last_send.event("order_completed", **(ORDER | {"cart_id": "c-other"}))
    last_send.at(last_send.clock.now())

    assert last_send.at(MORNING) == DeliveryStats(claimed=1, sent=1)
    assert last_send.received() == [RECEIPT, "Camille, your cart is waiting for you"]
    assert last_send.messages()["cart_reminder"].status is MessageStatus.sent


def test_an_order_dated_before_the_cart_does_not_cancel_it(last_send: Shop) -> None:
    queue_the_last_step_reminder(last_send)

    last_send.clock.set(datetime(2030, 1, 15, 23, 0, tzinfo=PARIS))
    with last_send.store.transaction() as uow:  # an old order, imported late: history
        uow.add_event(
            Event(
                id="old",
                name="order_completed",
                identifiers={IdentifierKind.email_id: EMAIL},
                occurred_at=EVENING - timedelta(days=1),
                received_at=last_send.clock.now(),
                properties=ORDER,
                contact_id="c1",
            )
        )
    last_send.processor.run_until_idle()

    last_send.at(MORNING)
    assert "Camille, your cart is waiting for you" in last_send.received()
    assert last_send.messages()["cart_reminder"].status is MessageStatus.sent


def test_an_order_before_the_email_was_queued_ends_the_run_as_before(last_send: Shop) -> None:
    last_send.event("cart_updated", **CART)
    last_send.clock.set(EVENING + timedelta(minutes=30))
    last_send.event("order_completed", **ORDER)  # the run is waiting: the engine ends it

    assert last_send.at(MORNING) == DeliveryStats(claimed=1, sent=1)
    assert last_send.received() == [RECEIPT]
    assert "cart_reminder" not in last_send.messages()  # never queued, nothing to recall
    with last_send.store.transaction() as uow:
        [run] = [r for r in uow.runs_for_contact("c1", active_only=False) if r.key != "A-10428"]
        skips = [e for e in uow.trace_for_contact("c1") if e.kind is TraceKind.skip]
    assert (run.outcome, run.reason) == (Outcome.exited_goal, "ordered")
    assert skips == []


def test_an_order_applied_only_after_the_email_was_queued_cancels_it(last_send: Shop) -> None:
    last_send.event("cart_updated", **CART)
    received = EVENING + timedelta(minutes=59)
    with last_send.store.transaction() as uow:  # received before the timer, not yet applied
        uow.add_event(
            Event(
                id="e2",
                name="order_completed",
                identifiers={IdentifierKind.email_id: EMAIL},
                occurred_at=received,
                received_at=received,
                properties=ORDER,
                contact_id="c1",
            )
        )
    last_send.clock.set(EVENING + timedelta(hours=1))
    assert last_send.processor.process_due().timers == 1  # the run ends, its email queued
    assert last_send.messages()["cart_reminder"].created_at > received

    assert last_send.at(MORNING) == DeliveryStats(claimed=2, sent=1, cancelled=1)
    assert last_send.received() == [RECEIPT]
    reminder = last_send.messages()["cart_reminder"]
    assert (reminder.status, reminder.last_error) == (
        MessageStatus.cancelled,
        "exit goal met by order_completed (e2)",
    )


def test_an_order_acknowledged_while_an_earlier_email_is_sent_cancels_a_later_one(
    last_send: Shop,
) -> None:
    # Two carts, each run ending with its reminder queued for 08:00; one send at a time, so
    # the second reminder waits for the first, claimed with it. While the first is being sent
    # the shop reports the order of the other cart: the second must not go.
    for cart in ("cart-a", "cart-b"):
        last_send.event("cart_updated", **{**CART, "cart_id": cart})
    assert last_send.at(EVENING + timedelta(hours=1)) == DeliveryStats()
    last_send.clock.set(MORNING)
    first: list[Message] = []

    class OrderDuringTheFirstSend:
        async def send_email(self, message: Message) -> str:
            if not first:
                first.append(message)
                with last_send.store.transaction() as uow:
                    run = uow.get_run(message.run_id)
                assert run is not None
                other = "cart-b" if run.key == "cart-a" else "cart-a"
                last_send.event("order_completed", **{**ORDER, "cart_id": other})  # e3
            return await last_send.sender.send_email(message)

    sender = OrderDuringTheFirstSend()

    # The two reminders, then the receipt the order queued.
    assert last_send.drain_one_at_a_time(sender) == DeliveryStats(claimed=3, sent=2, cancelled=1)
    assert last_send.received() == ["Camille, your cart is waiting for you", RECEIPT]
    with last_send.store.transaction() as uow:
        reminders = {m.key: m for m in uow.messages_for_contact("c1") if not m.transactional}
    later = next(m for key, m in reminders.items() if key != first[0].key)
    assert (later.status, later.last_error, later.sent_at) == (
        MessageStatus.cancelled,
        "exit goal met by order_completed (e3)",
        None,
    )
    assert reminders[first[0].key].status is MessageStatus.sent


def test_the_rest_of_a_batch_is_checked_after_a_wave_that_was_wholly_recalled(
    last_send: Shop,
) -> None:
    # Three carts, one send at a time. During the first send the customer unsubscribes: the
    # next wave (one reminder) is cancelled while nothing else is in flight, and the third
    # reminder must still be checked (and cancelled) in this drain, not left `sending` until
    # its lease runs out.
    for cart in ("cart-a", "cart-b", "cart-c"):
        last_send.event("cart_updated", **{**CART, "cart_id": cart})
    assert last_send.at(EVENING + timedelta(hours=1)) == DeliveryStats()
    last_send.clock.set(MORNING)
    first: list[Message] = []

    class UnsubscribeDuringTheFirstSend:
        async def send_email(self, message: Message) -> str:
            if not first:
                first.append(message)
                unsubscribe(last_send.store, last_send.clock, "c1", Channel.email, source="link")
            return await last_send.sender.send_email(message)

    sender = UnsubscribeDuringTheFirstSend()

    assert last_send.drain_one_at_a_time(sender) == DeliveryStats(claimed=3, sent=1, cancelled=2)
    with last_send.store.transaction() as uow:
        later = [m.status for m in uow.messages_for_contact("c1") if m.key != first[0].key]
    assert later == [MessageStatus.cancelled] * 2


def test_two_orders_acknowledged_during_one_send_cancel_both_later_reminders(
    last_send: Shop,
) -> None:
    # Three carts, one send at a time; while the first reminder is being sent the shop reports
    # the orders of the two other carts: neither of their reminders may go.
    carts = ("cart-a", "cart-b", "cart-c")
    for cart in carts:
        last_send.event("cart_updated", **{**CART, "cart_id": cart})
    assert last_send.at(EVENING + timedelta(hours=1)) == DeliveryStats()
    last_send.clock.set(MORNING)
    first: list[Message] = []

    class OrdersDuringTheFirstSend:
        async def send_email(self, message: Message) -> str:
            if not first:
                first.append(message)
                with last_send.store.transaction() as uow:
                    run = uow.get_run(message.run_id)
                assert run is not None
                for other in sorted(set(carts) - {run.key}):  # e4, e5
                    last_send.event("order_completed", **{**ORDER, "cart_id": other})
            return await last_send.sender.send_email(message)

    sender = OrdersDuringTheFirstSend()

    # The first reminder, then the one receipt of the two orders (one order id).
    assert last_send.drain_one_at_a_time(sender) == DeliveryStats(claimed=4, sent=2, cancelled=2)
    assert last_send.received() == ["Camille, your cart is waiting for you", RECEIPT]
    with last_send.store.transaction() as uow:
        later = sorted(
            (m.status, m.last_error)
            for m in uow.messages_for_contact("c1")
            if not m.transactional and m.key != first[0].key
        )
    assert later == [
        (MessageStatus.cancelled, "exit goal met by order_completed (e4)"),
        (MessageStatus.cancelled, "exit goal met by order_completed (e5)"),
    ]
