"""The Processor over every store (memory, SQLite, PostgreSQL) with a clock the test drives.

Given events in the log and workflows on disk, when the processor runs, then runs, trace and
outbox rows are what a user of `explain` would expect — and running again changes nothing.
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from tidings.adapters.clock import ManualClock
from tidings.engine.core import Environment
from tidings.model.contacts import Channel, Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.messages import Message
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Store
from tidings.service.processing import Processor
from tidings.service.registry import WorkflowRegistry

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)

TEMPLATES = {
    "cart.email.html": """---
subject: "Your cart {{ event.properties.cart_id }}"
---
<p>Hello {{ contact.FIRSTNAME }}, {{ params.total }} is waiting.</p>
""",
    "welcome.email.html": """---
subject: "Welcome"
---
<p>Welcome {{ contact.FIRSTNAME }}</p>
""",
}

WORKFLOWS = {
    "cart.yaml": """
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
        """,
    "welcome.yaml": """
        id: welcome
        trigger:
          event: signed_up
        steps:
          - send_email: {template: welcome}
        """,
}


@dataclass
class World:
    """A store, a processor over it, and the clock that drives it."""

    store: Store
    clock: ManualClock
    processor: Processor
    seen: int = 0

    def contact(self, contact_id: str = "c1", email: str = "ann@example.com") -> Contact:
        contact = Contact(
            id=contact_id,
            identifiers={IdentifierKind.email_id: email},
            attributes={"FIRSTNAME": "Ann"},
            created_at=self.clock.now(),
            updated_at=self.clock.now(),
        )
        with self.store.transaction() as uow:
            uow.save_contact(contact)
        return contact

    def event(
        self, name: str, contact_id: str = "c1", at: datetime | None = None, **props: Any
    ) -> Event:
        """Log an event as ingestion does (received now, dated `at` or now)."""
        self.seen += 1
        with self.store.transaction() as uow:
            contact = uow.get_contact(contact_id)
            assert contact is not None
            stored, _ = uow.add_event(
                Event(
                    id=f"e{self.seen}",
                    name=name,
                    identifiers=dict(contact.identifiers),
                    occurred_at=at or self.clock.now(),
                    received_at=self.clock.now(),
                    properties=props,
                    contact_id=contact_id,
                )
            )
        return stored

    def runs(self, contact_id: str = "c1") -> list[Run]:
        with self.store.transaction() as uow:
            return uow.runs_for_contact(contact_id, active_only=False)

    def messages(self, contact_id: str = "c1") -> list[Message]:
        with self.store.transaction() as uow:
            return uow.messages_for_contact(contact_id)

    def trace(self, contact_id: str = "c1") -> list[TraceEntry]:
        with self.store.transaction() as uow:
            return uow.trace_for_contact(contact_id)


@pytest.fixture
def make_world(store: Store, tmp_path: Path) -> Callable[..., World]:
    """A world over the parametrised store; `unsubscribe_url` may be replaced (e.g. to fail),
    and `extra` workflows (file name -> YAML) added to the usual ones."""

    def _make(
        unsubscribe_url: Callable[[str, Channel], str | None] | None = None,
        extra: dict[str, str] | None = None,
    ) -> World:
        templates, workflows = tmp_path / "templates", tmp_path / "workflows"
        templates.mkdir(exist_ok=True)
        workflows.mkdir(exist_ok=True)
        for name, text in TEMPLATES.items():
            (templates / name).write_text(text, encoding="utf-8")
        for name, text in {**WORKFLOWS, **(extra or {})}.items():
            (workflows / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        registry, outcome = WorkflowRegistry.from_directory(workflows, templates)
        assert outcome.problems == [], [str(p) for p in outcome.problems]
        registry.record_versions(store)
        clock = ManualClock(T0)
        env = Environment(
            templates=registry.catalog,
            mail_from="Shop <shop@example.com>",
            sms_sender="Shop",
            unsubscribe_url=unsubscribe_url or (lambda cid, ch: f"https://shop.test/u/{cid}/{ch}"),
        )
        return World(store, clock, Processor(store, registry, env, clock))

    return _make


def test_an_event_starts_a_run_that_waits_then_sends_when_its_timer_fires(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.contact()
    world.event("cart_updated", cart_id="K1", total=42)

    stats = world.processor.process_events()

    assert stats.events == 1
    [run] = world.runs()
    assert (run.workflow_id, run.key, run.status) == ("cart", "K1", RunStatus.waiting)
    assert run.due_at == T0 + timedelta(hours=1)
    assert world.messages() == []

    world.clock.advance(timedelta(minutes=59))
    assert world.processor.process_due().timers == 0
    world.clock.advance(timedelta(minutes=1))
    assert world.processor.process_due().timers == 1

    [message] = world.messages()
    assert (message.to, message.subject) == ("ann@example.com", "Your cart K1")
    assert "42 is waiting" in (message.html or "")
    [run] = world.runs()
    assert (run.status, run.outcome) == (RunStatus.finished, Outcome.finished)
    kinds = [entry.kind for entry in world.trace()]
    assert kinds[:3] == [TraceKind.trigger_matched, TraceKind.run_started, TraceKind.wait]
    assert TraceKind.send in kinds


def test_processing_twice_applies_each_event_and_timer_exactly_once(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.contact()
    world.event("cart_updated", cart_id="K1", total=1)
    world.event("signed_up")

    first = world.processor.process_events()
    again = world.processor.process_events()
    world.clock.advance(timedelta(hours=2))
    fired = world.processor.process_due()
    fired_again = world.processor.process_due()

    assert (first.events, again.events) == (2, 0)
    assert (fired.timers, fired_again.timers) == (1, 0)
    assert sorted(m.subject or "" for m in world.messages()) == ["Welcome", "Your cart K1"]
    assert sorted(r.workflow_id for r in world.runs()) == ["cart", "welcome"]
    assert world.processor.run_until_idle().events == 0


def test_a_late_event_still_reaches_the_exit_goal_of_a_waiting_run(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.contact()
    world.event("cart_updated", cart_id="K1", total=1)
    world.processor.run_until_idle()
    world.clock.advance(timedelta(minutes=30))
    world.event("cart_updated", cart_id="K2", total=1)  # applied before the late one
    world.processor.run_until_idle()

    # The purchase happened 10 minutes in, but reaches us only now, after a later event.
    world.event("order_completed", at=T0 + timedelta(minutes=10), cart_id="K1")
    world.processor.run_until_idle()
    world.clock.advance(timedelta(hours=2))
    world.processor.run_until_idle()

    runs = {run.key: run for run in world.runs()}
    assert (runs["K1"].outcome, runs["K1"].reason) == (Outcome.exited_goal, "bought")
    assert runs["K2"].outcome is Outcome.finished
    assert [m.subject for m in world.messages()] == ["Your cart K2"]


# A workflow that asks the history makes the processor read it whole (another code path).
ASKS_HISTORY = {
    "loyal.yaml": """
        id: loyal
        trigger:
          event: signed_up
          if: "count_events('order_completed') > 2"
        steps:
          - send_email: {template: welcome}
        """
}


@pytest.mark.parametrize("history", [False, True], ids=["no_history", "history"])
@pytest.mark.parametrize("batch", [False, True], ids=["one_by_one", "same_batch"])
def test_a_cart_arriving_after_its_order_sends_no_reminder(
    make_world: Callable[..., World], batch: bool, history: bool
) -> None:
    world = make_world(extra=ASKS_HISTORY if history else None)
    assert world.processor.registry.uses_history is history
    world.contact()
    world.clock.advance(timedelta(minutes=15))
    # Given the order (dated 10:10) is logged first and the cart it completes (10:00) after it
    order = world.event("order_completed", at=T0 + timedelta(minutes=10), cart_id="K1")
    if not batch:
        world.processor.run_until_idle()
    world.event("cart_updated", at=T0, cart_id="K1", total=42)
    # When both are applied and the reminder's hour has long passed
    world.processor.run_until_idle()
    world.clock.advance(timedelta(hours=2))
    world.processor.run_until_idle()

    # Then no reminder: the run ended by its goal when it started, and the trace says why
    assert world.messages() == []
    [run] = world.runs()
    assert (run.key, run.status, run.outcome, run.reason) == (
        "K1",
        RunStatus.finished,
        Outcome.exited_goal,
        "bought",
    )
    assert [(e.kind, e.message) for e in world.trace() if e.workflow_id == "cart"][1:] == [
        (TraceKind.run_started, "run started (key 'K1')"),
        (
            TraceKind.exited,
            f"run exited_goal: bought (exit goal met by order_completed ({order.id}) "
            "dated 2030-03-04 10:10:00 UTC, received before this trigger)",
        ),
    ]


def test_one_batch_judges_each_cart_by_its_own_contact_s_earlier_orders(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    for contact_id in ("late", "early", "after", "other"):
        world.contact(contact_id, f"{contact_id}@example.com")
    world.clock.advance(timedelta(minutes=15))
    # Given, logged together before any is applied: an order received before its cart but
    # dated after it; an order dated before its cart; an order received after its cart; and a
    # contact whose cart shares its key with another contact's order
    world.event("order_completed", "late", at=T0 + timedelta(minutes=10), cart_id="K1")
    world.event("order_completed", "early", at=T0 - timedelta(minutes=10), cart_id="K2")
    world.event("order_completed", "late", at=T0 + timedelta(minutes=5), cart_id="K4")
    for contact_id, cart in (("late", "K1"), ("early", "K2"), ("after", "K3"), ("other", "K4")):
        world.event("cart_updated", contact_id, at=T0, cart_id=cart, total=42)
    world.event("order_completed", "after", at=T0 + timedelta(minutes=12), cart_id="K3")
    # When they are applied in one batch and the reminders' hour has passed
    assert world.processor.process_events().events == 8
    world.clock.advance(timedelta(hours=2))
    world.processor.run_until_idle()

    # Then each cart was judged by its own contact's orders only
    outcomes = {
        contact_id: [(r.key, r.outcome) for r in world.runs(contact_id)]
        for contact_id in ("late", "early", "after", "other")
    }
    assert outcomes == {
        "late": [("K1", Outcome.exited_goal)],
        "early": [("K2", Outcome.finished)],
        "after": [("K3", Outcome.exited_goal)],
        "other": [("K4", Outcome.finished)],
    }
    sent = {c: [m.subject for m in world.messages(c)] for c in ("late", "early", "after", "other")}
    assert sent == {"late": [], "early": ["Your cart K2"], "after": [], "other": ["Your cart K4"]}


def test_a_cart_after_an_earlier_order_still_gets_its_reminder(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.contact()
    world.event("order_completed", at=T0 - timedelta(minutes=10), cart_id="K1")  # before the cart
    world.event("cart_updated", at=T0, cart_id="K1", total=42)
    world.processor.run_until_idle()
    world.clock.advance(timedelta(hours=1))
    world.processor.run_until_idle()

    assert [m.subject for m in world.messages()] == ["Your cart K1"]


NUDGE = {
    "trial.yaml": """
        id: trial
        trigger:
          event: trial_started
        steps:
          - wait_for:
              event: card_added
              timeout: 1d
              on_event: [{exit: paid}]
              on_timeout:
                - send_email: {template: welcome}
        """
}


def test_a_late_trigger_s_wait_for_takes_the_awaited_event_that_came_first(
    make_world: Callable[..., World],
) -> None:
    world = make_world(extra=NUDGE)
    world.contact()
    world.clock.advance(timedelta(minutes=15))
    # The card (10:10) is logged before the trial it ends (10:00), which comes late
    card = world.event("card_added", at=T0 + timedelta(minutes=10))
    world.processor.run_until_idle()
    world.event("trial_started", at=T0)
    world.processor.run_until_idle()
    world.clock.advance(timedelta(days=2))
    world.processor.run_until_idle()

    assert world.messages() == []
    [run] = world.runs()
    assert (run.outcome, run.reason) == (Outcome.exited_step, "paid")
    assert (
        f"received card_added ({card.id}) dated 2030-03-04 10:10:00 UTC, "
        "received before this trigger"
    ) in [e.message for e in world.trace() if e.kind is TraceKind.resumed]


def test_a_decision_that_raises_is_quarantined_with_an_error_trace_and_blocks_nothing(
    make_world: Callable[..., World],
) -> None:
    def unsubscribe_url(contact_id: str, channel: Channel) -> str:
        if contact_id == "bad":
            raise RuntimeError("link service exploded")
        return f"https://shop.test/u/{contact_id}"

    world = make_world(unsubscribe_url)
    world.contact("bad", "bad@example.com")
    world.contact("good", "good@example.com")
    world.event("signed_up", contact_id="bad")
    world.event("signed_up", contact_id="good")

    stats = world.processor.run_until_idle()

    assert stats.events == 2
    [error] = [e for e in world.trace("bad") if e.kind is TraceKind.error]
    assert "RuntimeError: link service exploded" in error.message
    assert world.messages("bad") == []
    assert [m.subject for m in world.messages("good")] == ["Welcome"]
    assert world.processor.process_events().events == 0  # the log moved past it


def test_an_event_only_an_older_version_names_still_reaches_its_runs(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    world = make_world()
    world.contact()
    world.event("cart_updated", cart_id="K1", total=1)
    world.processor.run_until_idle()
    # The cart workflow is edited: its goal is now `checkout_done`, not `order_completed`.
    edited = textwrap.dedent(WORKFLOWS["cart.yaml"]).replace("order_completed", "checkout_done")
    (tmp_path / "workflows" / "cart.yaml").write_text(edited.lstrip(), encoding="utf-8")
    registry, outcome = WorkflowRegistry.from_directory(
        tmp_path / "workflows", tmp_path / "templates"
    )
    assert outcome.problems == []
    world.processor.registry.replace(registry.current)
    assert "order_completed" not in world.processor.event_names

    world.event("order_completed", cart_id="K1")  # the goal of the version the run is on
    world.event("page_viewed")  # no version of any workflow names it
    stats = world.processor.run_until_idle()
    world.clock.advance(timedelta(hours=2))
    world.processor.run_until_idle()

    assert stats.events == 2
    [run] = world.runs()
    assert (run.outcome, run.reason) == (Outcome.exited_goal, "bought")
    assert world.messages() == []


# -- batches: a contact's state is read ahead for the whole batch, then again once written ---


def test_an_order_in_the_batch_of_its_cart_ends_the_run_the_cart_started(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.contact()
    world.contact("c2", "bob@example.com")
    world.event("cart_updated", cart_id="K1", total=1)
    world.event("cart_updated", "c2", cart_id="K9", total=1)
    world.event("order_completed", cart_id="K1")  # must see the run the first event started

    assert world.processor.process_events().events == 3
    world.clock.advance(timedelta(hours=2))
    world.processor.run_until_idle()

    [run] = world.runs()
    assert (run.outcome, run.reason) == (Outcome.exited_goal, "bought")
    assert world.messages() == []
    assert [m.subject for m in world.messages("c2")] == ["Your cart K9"]


def test_two_timers_of_one_contact_in_one_batch_each_fire_once(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    world.contact()
    world.contact("c2", "bob@example.com")
    for contact_id, cart_id in (("c1", "K1"), ("c2", "K3"), ("c1", "K2")):
        world.event("cart_updated", contact_id, cart_id=cart_id, total=1)
    world.processor.run_until_idle()
    world.clock.advance(timedelta(hours=1))

    fired = world.processor.process_due()  # all three in one batch, c1's two among them

    assert (fired.timers, fired.messages) == (3, 3)
    assert world.processor.run_until_idle().timers == 0
    for contact_id, carts in (("c1", ["K1", "K2"]), ("c2", ["K3"])):
        runs = world.runs(contact_id)
        assert [(r.key, r.outcome) for r in runs] == [(k, Outcome.finished) for k in carts]
        assert [m.subject for m in world.messages(contact_id)] == [f"Your cart {k}" for k in carts]
        sends = [e.run_id for e in world.trace(contact_id) if e.kind is TraceKind.send]
        assert sorted(sends) == sorted(r.id for r in runs)


def test_two_processors_sharing_a_store_fire_each_timer_once(
    make_world: Callable[..., World],
) -> None:
    world = make_world()
    contacts = [f"c{n}" for n in range(10)]
    for n, contact_id in enumerate(contacts):
        world.contact(contact_id, f"user{n}@example.com")
        for cart_id in ("A", "B"):
            world.event("cart_updated", contact_id, cart_id=f"{cart_id}{n}", total=1)
    world.processor.run_until_idle()
    world.clock.advance(timedelta(hours=1))
    first = world.processor
    second = Processor(first.store, first.registry, first.env, first.clock)
    fired: list[int] = []
    errors: list[BaseException] = []

    def fire(processor: Processor) -> None:
        processor.batch = 3  # several batches each, interleaved, a contact's two in any of them
        try:
            while (stats := processor.process_due()).timers:
                fired.append(stats.timers)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=fire, args=(p,)) for p in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(fired) == 2 * len(contacts)
    for contact_id in contacts:
        runs = world.runs(contact_id)
        assert [r.outcome for r in runs] == [Outcome.finished, Outcome.finished]
        assert len(world.messages(contact_id)) == 2
        sends = [e.run_id for e in world.trace(contact_id) if e.kind is TraceKind.send]
        assert sorted(sends) == sorted(r.id for r in runs)


class _FirstClaimShort:
    """A store whose first claim of events comes back with one event only, as a claim on
    PostgreSQL does while another process holds the others (skipped as locked)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.claims = 0

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.inner.transaction() as uow:
            yield _ShortClaims(uow, self)


class _ShortClaims:
    def __init__(self, uow: Any, store: _FirstClaimShort) -> None:
        self._uow = uow
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)

    def claim_event_heads(self, limit: int) -> Any:
        self._store.claims += 1
        return self._uow.claim_event_heads(1 if self._store.claims == 1 else limit)


@pytest.mark.parametrize(("sole_claimer", "handled"), [(False, 3), (True, 1)])
def test_a_short_claim_ends_the_pass_only_for_the_stores_sole_claimer(
    make_world: Callable[..., World], sole_claimer: bool, handled: int
) -> None:
    """Shared with other processes (PostgreSQL), a short claim may have skipped events others
    hold: the pass goes on until a round finds none. A sole claimer's short claim took them
    all, so its pass ends there (the rest here were held back only by this test's store)."""
    world = make_world()
    for contact in ("c1", "c2", "c3"):
        world.contact(contact, f"{contact}@example.com")
        world.event("signed_up", contact_id=contact)
    short = _FirstClaimShort(world.store)
    processor = Processor(
        cast(Store, short),
        world.processor.registry,
        world.processor.env,
        world.clock,
        sole_claimer=sole_claimer,
    )

    assert processor.run_until_idle().events == handled
    welcomed = [c for c in ("c1", "c2", "c3") if world.messages(c)]
    assert len(welcomed) == handled
