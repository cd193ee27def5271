"""`in_flight`: what a newly loaded workflow version does to the runs still on an older one.

Over every store (memory, SQLite, PostgreSQL), as the daemon does it: write a workflow file,
load it, start runs, edit the file, load again (a SIGHUP reload or a restart), apply the new
version's policy; then the runs, the trace, `explain` and the outbox say what users see.
"""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tidings.adapters.clock import ManualClock
from tidings.adapters.outbox_dir import OutboxDirSender
from tidings.compile.loader import CompiledWorkflow
from tidings.engine.core import Environment
from tidings.errors import StoreError
from tidings.model.contacts import Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Store
from tidings.service.delivery import DeliveryWorker
from tidings.service.explain import explain, read_report
from tidings.service.in_flight import apply_in_flight
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry

T0 = datetime(2030, 3, 4, 18, 0, tzinfo=UTC)

TEMPLATE = """---
subject: "Your cart {{ event.properties.cart_id }}"
---
<p>Hello {{ contact.FIRSTNAME }}, your cart is waiting.</p>
"""

CART = """
    id: cart
    trigger: {event: cart_updated}
    key: "{{ event.properties.cart_id }}"
    mode: queued
    quiet_hours: {start: "21:00", end: "08:00", timezone: UTC}
    steps:
      - wait: 4h
      - send_email: {template: cart}
      - wait: 1d
      - send_email: {template: cart}
    """


@dataclass
class Shop:
    """Workflow files on disk, a store, a processor over them, and the clock that drives them."""

    store: Store
    folder: Path
    clock: ManualClock
    processor: Processor
    seen: int = 0
    contacts: set[str] = field(default_factory=set)

    def write(self, yaml: str, **replace: str) -> None:
        text = textwrap.dedent(yaml).lstrip()
        for old, new in replace.items():
            text = text.replace(old, new)
        (self.folder / "workflows" / "cart.yaml").write_text(text, encoding="utf-8")

    def load(self) -> CompiledWorkflow:
        """Load the files again, as a reload does; the cart workflow's new current version."""
        fresh, outcome = WorkflowRegistry.from_directory(
            self.folder / "workflows", self.folder / "templates"
        )
        assert outcome.problems == [], [str(p) for p in outcome.problems]
        self.processor.registry.replace(fresh.current)
        self.processor.registry.record_versions(self.store)
        [workflow] = self.processor.registry.current
        return workflow

    def cart(self, contact_id: str = "c1", cart_id: str = "K1") -> None:
        """A cart event from this contact, applied now."""
        self.event("cart_updated", contact_id, cart_id=cart_id)

    def event(self, name: str, contact_id: str = "c1", **properties: Any) -> None:
        """An event from this contact (created on first use), applied now."""
        email = f"{contact_id}@example.com"
        with self.store.transaction() as uow:
            if contact_id not in self.contacts:
                uow.save_contact(
                    Contact(
                        id=contact_id,
                        identifiers={IdentifierKind.email_id: email},
                        attributes={"FIRSTNAME": "Ann"},
                        created_at=self.clock.now(),
                        updated_at=self.clock.now(),
                    )
                )
                self.contacts.add(contact_id)
            self.seen += 1
            uow.add_event(
                Event(
                    id=f"e{self.seen}",
                    name=name,
                    identifiers={IdentifierKind.email_id: email},
                    occurred_at=self.clock.now(),
                    received_at=self.clock.now(),
                    properties=properties,
                    contact_id=contact_id,
                )
            )
        self.processor.run_until_idle()

    def at(self, when: datetime) -> None:
        self.clock.set(when)
        self.processor.run_until_idle()

    def runs(self, contact_id: str = "c1") -> list[Run]:
        with self.store.transaction() as uow:
            return uow.runs_for_contact(contact_id, active_only=False)

    def trace(self, contact_id: str = "c1") -> list[TraceEntry]:
        with self.store.transaction() as uow:
            return uow.trace_for_contact(contact_id)

    def messages(self, contact_id: str = "c1") -> list[Message]:
        with self.store.transaction() as uow:
            return uow.messages_for_contact(contact_id)

    def cancellations(self, contact_id: str = "c1") -> list[TraceEntry]:
        return [
            e
            for e in self.trace(contact_id)
            if e.kind is TraceKind.finished and e.data.get("outcome") == "cancelled"
        ]


def processor_over(store: Store, folder: Path, clock: ManualClock) -> Processor:
    """A processor as the daemon builds one at start, from the files as they are now."""
    registry, outcome = WorkflowRegistry.from_directory(folder / "workflows", folder / "templates")
    assert outcome.problems == []
    registry.record_versions(store)
    env = Environment(
        templates=registry.catalog,
        mail_from="Shop <shop@example.com>",
        sms_sender="Shop",
        unsubscribe_url=lambda cid, ch: f"https://shop.test/u/{cid}/{ch}",
    )
    return Processor(store, registry, env, clock)


@pytest.fixture
def shop(store: Store, tmp_path: Path) -> Shop:
    (tmp_path / "templates").mkdir()
    (tmp_path / "workflows").mkdir()
    (tmp_path / "templates" / "cart.email.html").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "workflows" / "cart.yaml").write_text(
        textwrap.dedent(CART).lstrip(), encoding="utf-8"
    )
    clock = ManualClock(T0)
    return Shop(store, tmp_path, clock, processor_over(store, tmp_path, clock))


def test_by_default_a_run_in_flight_keeps_the_version_it_started_with(shop: Shop) -> None:
    shop.cart()
    [before] = shop.runs()
    shop.write(CART, **{"wait: 1d": "wait: 2d"})
    new = shop.load()

    assert apply_in_flight(shop.processor, [new]) == 0
    shop.at(T0 + timedelta(hours=4))

    [run] = shop.runs()
    assert run.workflow_version == before.workflow_version != new.version
    assert (run.status, run.due_at) == (RunStatus.waiting, T0 + timedelta(hours=4, days=1))
    assert shop.cancellations() == []


def test_cancel_ends_the_runs_on_the_older_version_and_explain_says_why(shop: Shop) -> None:
    shop.cart("c1")
    shop.cart("c2")
    [old] = shop.runs("c1")
    shop.write(CART, **{"mode: queued": "mode: queued\nin_flight: cancel"})
    new = shop.load()
    shop.clock.advance(timedelta(minutes=30))

    assert apply_in_flight(shop.processor, [new]) == 2
    shop.at(T0 + timedelta(days=2))  # their timers would have sent both emails by now

    reason = f"version {old.workflow_version} replaced by {new.version} (in_flight: cancel)"
    for contact_id in ("c1", "c2"):
        [run] = shop.runs(contact_id)
        assert (run.status, run.outcome, run.reason) == (
            RunStatus.finished,
            Outcome.cancelled,
            reason,
        )
        assert run.finished_at == T0 + timedelta(minutes=30)
        [entry] = shop.cancellations(contact_id)
        assert (entry.message, entry.run_id) == (f"run cancelled: {reason}", run.id)
        assert shop.messages(contact_id) == []
    report = read_report(shop.store, "c1@example.com", "cart")
    assert report is not None
    text = explain(report, shop.clock.now())
    assert f"cancelled at 2030-03-04 18:30:00 UTC: {reason}" in text
    assert f"finished        run cancelled: {reason}" in text


def test_new_runs_start_on_the_new_version_and_are_not_cancelled_by_it(shop: Shop) -> None:
    shop.cart("c1", "K1")
    shop.write(CART, **{"mode: queued": "mode: queued\nin_flight: cancel"})
    new = shop.load()
    apply_in_flight(shop.processor, [new])
    shop.cart("c1", "K2")

    assert apply_in_flight(shop.processor, [new]) == 0  # again (a restart): nothing to do
    runs = {run.key: run for run in shop.runs()}
    assert runs["K1"].outcome is Outcome.cancelled
    assert (runs["K2"].workflow_version, runs["K2"].status) == (new.version, RunStatus.waiting)
    assert len(shop.cancellations()) == 1


def test_a_daemon_restarting_with_a_changed_file_cancels_the_older_runs(
    shop: Shop, store: Store
) -> None:
    shop.cart()
    [old] = shop.runs()
    shop.write(CART, **{"mode: queued": "mode: queued\nin_flight: cancel"})
    restarted = processor_over(store, shop.folder, shop.clock)  # the daemon came back up

    assert apply_in_flight(restarted, restarted.registry.current) == 1
    [run] = shop.runs()
    assert run.outcome is Outcome.cancelled
    assert run.reason is not None and old.workflow_version in run.reason


def test_a_marketing_email_queued_by_a_cancelled_run_is_recalled_not_sent(
    shop: Shop, tmp_path: Path
) -> None:
    shop.cart()
    shop.at(T0 + timedelta(hours=4))  # 22:00: the email waits for the quiet hours' end
    [queued] = shop.messages()
    assert (queued.status, queued.not_before) == (
        MessageStatus.pending,
        datetime(2030, 3, 5, 8, 0, tzinfo=UTC),
    )
    shop.write(CART, **{"mode: queued": "mode: queued\nin_flight: cancel"})
    new = shop.load()
    apply_in_flight(shop.processor, [new])

    outbox = tmp_path / "outbox"
    sender = OutboxDirSender(outbox)
    worker = DeliveryWorker(
        shop.store,
        sender,
        sender,
        shop.clock,
        registry=shop.processor.registry,
        env=shop.processor.env,
    )
    shop.at(datetime(2030, 3, 5, 8, 0, tzinfo=UTC))
    stats = asyncio.run(worker.drain())

    assert (stats.sent, stats.cancelled) == (0, 1)
    assert not outbox.exists() or list(outbox.iterdir()) == []
    [message] = shop.messages()
    [run] = shop.runs()
    assert message.status is MessageStatus.cancelled
    assert message.last_error == f"run cancelled: {run.reason}"


def test_a_queued_run_behind_a_cancelled_one_starts_on_the_new_version(shop: Shop) -> None:
    shop.cart("c1", "K1")
    shop.clock.advance(timedelta(minutes=1))
    shop.cart("c1", "K1")  # mode queued: waits for the first run of K1
    shop.write(CART, **{"mode: queued": "mode: queued\nin_flight: cancel", "4h": "2h"})
    new = shop.load()

    assert apply_in_flight(shop.processor, [new]) == 1
    first, second = shop.runs()
    assert first.outcome is Outcome.cancelled
    assert (second.status, second.workflow_version) == (RunStatus.waiting, new.version)
    assert second.due_at == T0 + timedelta(minutes=1, hours=2)  # the new version's wait


def test_a_bad_in_flight_value_is_refused_and_the_last_good_version_stays(shop: Shop) -> None:
    shop.write(CART, **{"mode: queued": "mode: queued\nin_flight: cancle"})
    _, outcome = WorkflowRegistry.from_directory(
        shop.folder / "workflows", shop.folder / "templates"
    )

    assert [str(p) for p in outcome.problems] == [
        f"{shop.folder / 'workflows' / 'cart.yaml'}:5:12: in_flight: expected one of 'keep',"
        " 'cancel' or 'upgrade', found 'cancle' (did you mean 'cancel'?)"
    ]


def test_daemons_sharing_a_store_cancel_each_run_once(shop: Shop, store: Store) -> None:
    contacts = [f"c{i}" for i in range(12)]
    for contact_id in contacts:
        shop.cart(contact_id)
    shop.write(CART, **{"mode: queued": "mode: queued\nin_flight: cancel"})
    daemons = [processor_over(store, shop.folder, shop.clock) for _ in range(2)]
    for daemon in daemons:
        daemon.batch = 5  # several batches each, interleaved
    counts: list[int] = []
    errors: list[BaseException] = []

    def settle(processor: Processor) -> None:
        try:
            counts.append(apply_in_flight(processor, processor.registry.current))
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=settle, args=(d,)) for d in daemons]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(counts) == len(contacts)
    for contact_id in contacts:
        assert [r.outcome for r in shop.runs(contact_id)] == [Outcome.cancelled]
        assert len(shop.cancellations(contact_id)) == 1


class DeadlockOnSecondLock:
    """A store whose transactions fail when they lock a second contact, as one does on
    PostgreSQL when an engine batch holds that contact and waits for the first."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.failures = 0

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.inner.transaction() as uow:
            yield _Locking(uow, self)


class _Locking:
    def __init__(self, uow: Any, store: DeadlockOnSecondLock) -> None:
        self._uow, self._store, self._locked = uow, store, 0

    def lock_contact(self, contact_id: str) -> None:
        self._locked += 1
        if self._locked == 2:
            self._store.failures += 1
            raise StoreError("deadlock detected")
        self._uow.lock_contact(contact_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)


def test_a_batch_that_fails_is_retried_one_contact_per_transaction(
    shop: Shop, store: Store
) -> None:
    for contact_id in ("c1", "c2", "c3"):
        shop.cart(contact_id)
    shop.write(CART, **{"mode: queued": "mode: queued\nin_flight: cancel"})
    failing = DeadlockOnSecondLock(store)
    daemon = processor_over(failing, shop.folder, shop.clock)  # type: ignore[arg-type]

    assert apply_in_flight(daemon, daemon.registry.current) == 3
    assert failing.failures == 1  # the batch of three, rolled back, then one by one
    for contact_id in ("c1", "c2", "c3"):
        assert [r.outcome for r in shop.runs(contact_id)] == [Outcome.cancelled]
        assert len(shop.cancellations(contact_id)) == 1


UPGRADE = {"mode: queued": "mode: queued\nin_flight: upgrade"}


def test_upgrade_moves_a_run_waiting_at_a_wait_and_it_carries_on_with_the_new_steps(
    shop: Shop,
) -> None:
    shop.cart()
    [old] = shop.runs()
    renamed = "send_email: {template: cart, subject: 'New {{ event.properties.cart_id }}'}"
    shop.write(
        CART, **UPGRADE, **{"send_email: {template: cart}\n  - wait": renamed + "\n  - wait"}
    )
    new = shop.load()
    shop.clock.advance(timedelta(minutes=30))

    assert apply_in_flight(shop.processor, [new]) == 1
    [moved] = shop.runs()
    assert (moved.workflow_version, moved.status) == (new.version, RunStatus.waiting)
    assert moved.due_at == T0 + timedelta(hours=4)  # the timer armed by the old version
    [entry] = [e for e in shop.trace() if e.kind is TraceKind.upgraded]
    assert entry.message == (
        f"run moved from version {old.workflow_version} to {new.version} at step 0"
        " (in_flight: upgrade)"
    )
    shop.at(T0 + timedelta(hours=4))
    [message] = shop.messages()
    assert message.subject == "New K1"
    assert apply_in_flight(shop.processor, [new]) == 0


def test_upgrade_cancels_a_run_whose_step_is_now_of_another_kind(shop: Shop) -> None:
    shop.cart()
    [old] = shop.runs()
    shop.write(CART, **UPGRADE, **{"  - wait: 4h\n": ""})  # step 0 is now the send_email
    new = shop.load()

    assert apply_in_flight(shop.processor, [new]) == 1
    [run] = shop.runs()
    assert (run.outcome, run.reason) == (
        Outcome.cancelled,
        f"version {old.workflow_version} replaced by {new.version}: it waits at a wait at step"
        " 0, now a send_email (in_flight: upgrade)",
    )
    shop.at(T0 + timedelta(days=2))
    assert shop.messages() == []


WAIT_FOR = """
    id: cart
    trigger: {event: cart_updated}
    steps:
      - wait_for:
          event: order_completed
          timeout: 1d
          on_event: [{exit: bought}]
    """


def test_upgrade_makes_a_wait_for_await_the_new_version_s_events(shop: Shop) -> None:
    shop.write(WAIT_FOR)
    shop.processor = processor_over(shop.store, shop.folder, shop.clock)
    shop.cart()
    shop.write(
        WAIT_FOR, **{"order_completed": "checkout_done", "steps:": "in_flight: upgrade\nsteps:"}
    )
    new = shop.load()

    assert apply_in_flight(shop.processor, [new]) == 1
    [moved] = shop.runs()
    assert (moved.workflow_version, moved.waiting_for) == (new.version, ("checkout_done",))
    shop.clock.advance(timedelta(minutes=5))
    shop.event("checkout_done")
    [run] = shop.runs()
    assert (run.outcome, run.reason) == (Outcome.exited_step, "bought")
