"""Recall of a claimed batch reads its runs, contacts and goal events in bulk, and decides
exactly as a check of each message on its own does (the reference below reads one record at a
time, as the delivery worker once did), on every store, with or without the bulk reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from support.messages import T0, make_message
from support.records import make_contact, make_event, make_run
from tidings.compile.loader import load_workflow_text
from tidings.compile.templates import TemplateCatalog
from tidings.engine.decision import ContactState, Environment
from tidings.engine.goals import goal_horizon, goal_met_for_ended_run, goal_names
from tidings.model.contacts import Channel
from tidings.model.messages import Message, MessageStatus
from tidings.model.runs import Outcome, RunStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.ports import Store, UnitOfWork
from tidings.service.recall import GOAL_MET, GOALS_OUTLIVE, Goals, recall, recall_reason
from tidings.service.registry import WorkflowRegistry

ROOT = Path(__file__).resolve().parents[2]
NOW = T0 + timedelta(days=1)
LEASE = timedelta(minutes=5)

CART = """\
id: cart_reminder
trigger: {event: cart_updated}
key: "{{ event.properties.cart_id }}"
exit:
  - event: order_completed
    if: "event.properties.cart_id == run.key"
    reason: ordered
steps:
  - send_email: {template: abandoned_cart}
"""

# Its goal asks the contact's history: the check reads every event of the contact.
LOYAL = """\
id: loyal_reminder
trigger: {event: cart_updated}
exit:
  - event: refund_requested
    if: 'has_event("cart_updated")'
    reason: refunded
steps:
  - send_email: {template: abandoned_cart}
"""

BULK = {"get_messages", "get_runs", "contact_events_many", "find_contacts_many"}
ONE_BY_ONE = {"get_message", "get_run", "get_contact", "contact_events"}


class Counted:
    """A unit of work counting the reads it answers; with `bulk=False` it offers none of the
    bulk reads, like a unit of work that has none."""

    def __init__(self, inner: UnitOfWork, *, bulk: bool) -> None:
        self._inner = inner
        self._bulk = bulk
        self.reads: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        if name in BULK and not self._bulk:
            raise AttributeError(name)
        found = getattr(self._inner, name)
        if name not in BULK | ONE_BY_ONE:
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads[name] = self.reads.get(name, 0) + 1
            return found(*args, **kwargs)

        return counted


def goals() -> Goals:
    catalog = TemplateCatalog.load(ROOT / "templates")
    workflows = [load_workflow_text(text, "inline", catalog).workflow for text in (CART, LOYAL)]
    assert all(w is not None for w in workflows)
    registry = WorkflowRegistry(catalog, [w for w in workflows if w is not None])
    env = Environment(templates=catalog, mail_from="shop@example.com", sms_sender="Shop")
    return Goals(registry, env)


def given_a_batch(store: Store, judge: Goals) -> None:
    """Messages whose recall each rule decides, several per run and per contact."""
    cart = judge.registry.current[0]
    loyal = judge.registry.current[1]
    assert (cart.id, loyal.id) == ("cart_reminder", "loyal_reminder")

    def run(n: int, contact: int, workflow: Any = cart, **fields: Any) -> Any:
        fields = {
            "contact_id": f"contact-{contact}",
            "workflow_id": workflow.id,
            "workflow_version": workflow.version,
            "status": RunStatus.finished,
            "outcome": Outcome.finished,
            "due_at": None,
            "vars": {"triggered_at": (T0 + timedelta(minutes=n)).isoformat()},
        } | fields
        return make_run(n, **fields)

    def event(n: int, contact: int, name: str, minutes: int, **properties: Any) -> Any:
        return make_event(
            n,
            id=f"e{n}",  # not a run's trigger (event-{n}): a trigger is never its run's goal
            name=name,
            contact_id=f"contact-{contact}",
            occurred_at=T0 + timedelta(minutes=minutes),
            properties=properties,
        )

    runs = [
        run(1, 1),  # contact-1 ordered cart-1 after: recalled (two messages)
        run(2, 2),  # contact-2 ordered another cart: kept
        run(3, 3),  # contact-3 ordered cart-3, but before the run's horizon: kept
        run(4, 1, status=RunStatus.finished, outcome=Outcome.exited_goal, reason="ordered"),
        run(5, 4, outcome=Outcome.restarted),
        run(6, 5, workflow=loyal),  # contact-5 asked a refund, with a cart in history: recalled
        run(7, 1, workflow=loyal),  # contact-1 too, and has a cart: recalled
        run(8, 6, workflow=loyal),  # contact-6 asked a refund, with no cart: kept
        run(9, 2, status=RunStatus.waiting, outcome=None, due_at=NOW),  # waiting: kept
        run(10, 3, workflow_version="gone"),  # a version nobody kept: kept
        run(11, 7, outcome=Outcome.error),  # failed, met no goal: kept
    ]
    contacts = [make_contact(n) for n in range(1, 8)]
    contacts[6] = contacts[6].model_copy(update={"unsubscribed": frozenset({Channel.email})})
    events = [
        event(1, 1, "cart_updated", 1, cart_id="cart-1"),
        event(2, 1, "order_completed", 90, cart_id="cart-1"),
        event(3, 2, "order_completed", 90, cart_id="cart-other"),
        event(4, 3, "order_completed", 1, cart_id="cart-3"),
        event(5, 5, "cart_updated", 2, cart_id="x"),
        event(6, 5, "refund_requested", 120),
        event(7, 1, "refund_requested", 150),
        event(8, 6, "refund_requested", 150),
    ]
    messages = [
        make_message(1, run_id="run-1", contact_id="contact-1"),
        make_message(12, run_id="run-1", contact_id="contact-1", key="run-1:1"),
        make_message(2, run_id="run-2", contact_id="contact-2"),
        make_message(3, run_id="run-3", contact_id="contact-3"),
        make_message(4, run_id="run-4", contact_id="contact-1"),
        make_message(5, run_id="run-5", contact_id="contact-4"),
        make_message(6, run_id="run-6", contact_id="contact-5"),
        make_message(7, run_id="run-7", contact_id="contact-1"),
        make_message(8, run_id="run-8", contact_id="contact-6"),
        make_message(9, run_id="run-9", contact_id="contact-2"),
        make_message(10, run_id="run-10", contact_id="contact-3"),
        make_message(11, run_id="run-11", contact_id="contact-7"),  # unsubscribed: recalled
        make_message(13, run_id="run-11", contact_id="contact-7", transactional=True),
        make_message(14, run_id="run-404", contact_id="contact-1"),  # no run: kept
        make_message(15, run_id="run-2", contact_id="contact-404"),  # no contact: kept
    ]
    with store.transaction() as uow:
        uow.save_runs(runs)
        for contact in contacts:
            uow.save_contact(contact)
        for one in events:
            uow.add_event(one)
        uow.add_messages(messages)


def recall_one_at_a_time(
    uow: UnitOfWork, claimed: Sequence[Message], now: datetime, judge: Goals
) -> tuple[dict[str, tuple[str, str] | None], list[TraceEntry]]:
    """The reference: each message checked on its own reads, in claim order (see `recall`)."""
    decided: dict[str, tuple[str, str] | None] = {}
    checked: dict[str, tuple[str, str] | None] = {}
    trace: list[TraceEntry] = []
    for message in claimed:
        if message.transactional:
            decided[message.key] = None
            continue
        run, contact = uow.get_run(message.run_id), uow.get_contact(message.contact_id)
        reason = recall_reason(message, run, contact)
        if reason is None and run is not None and contact is not None:
            if run.id not in checked:
                checked[run.id] = None
                workflow = judge.registry.version(run.workflow_id, run.workflow_version, uow)
                ended = run.outcome in GOALS_OUTLIVE
                if ended and workflow is not None and workflow.definition.exit:
                    history = uow.contact_events(contact.id) if workflow.uses_history else []
                    found = history or uow.contact_events(
                        contact.id, names=goal_names(workflow), since=goal_horizon(run)
                    )
                    state = ContactState(contact=contact, runs=(), history=history)
                    reached, notes = goal_met_for_ended_run(
                        state, workflow, run, found, now=now, env=judge.env
                    )
                    trace += notes
                    if reached is not None:
                        why = f"exit goal met by {reached.event.name} ({reached.event.id})"
                        checked[run.id] = (GOAL_MET, why)
            reason = checked[run.id]
        decided[message.key] = reason
        if reason is not None:
            text = f"email to {message.to} skipped: {reason[1]} after it was queued"
            trace.append(
                message.trace_entry(
                    now, TraceKind.skip, text, attempts=message.attempts, reason=reason[0]
                )
            )
    return decided, trace


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk reads", "one by one"])
def test_a_batch_is_recalled_as_each_message_on_its_own_would_be(store: Store, bulk: bool) -> None:
    judge = goals()
    given_a_batch(store, judge)
    with store.transaction() as uow:
        claimed = uow.claim_messages(NOW, 100, LEASE)
        expected, expected_trace = recall_one_at_a_time(uow, claimed, NOW, judge)
        counted = Counted(uow, bulk=bulk)

        kept = recall(counted, claimed, NOW, judge)  # type: ignore[arg-type]

        outcome = {m.key: uow.get_message(m.key) for m in claimed}
        trace = [e for c in range(1, 8) for e in uow.trace_for_contact(f"contact-{c}")]
    assert len(claimed) == 15
    assert [m.key for m in kept] == [k for k, reason in expected.items() if reason is None]
    assert {k: reason[0] for k, reason in expected.items() if reason is not None} == {
        "run-1:0": GOAL_MET,
        "run-1:1": GOAL_MET,
        "run-11:0": "unsubscribed",
        "run-4:0": "exited_goal",
        "run-5:0": "restarted",
        "run-6:0": GOAL_MET,
        "run-7:0": GOAL_MET,
    }
    for key, reason in expected.items():
        row = outcome[key]
        assert row is not None
        if reason is None:
            assert (row.status, row.last_error) == (MessageStatus.sending, None)
        else:
            assert (row.status, row.last_error) == (MessageStatus.cancelled, reason[1])

    def entry(e: TraceEntry) -> tuple[Any, ...]:
        return (e.contact_id, e.kind, e.message, e.data.get("key"), e.data.get("reason"))

    assert sorted(map(entry, trace)) == sorted(map(entry, expected_trace))
    if bulk:
        # One read per table for the batch; the goal events in at most two (whole histories,
        # and the events of goal names).
        assert {k: n for k, n in counted.reads.items() if k in ONE_BY_ONE} == {}
        assert counted.reads["get_runs"] == counted.reads["find_contacts_many"] == 1
        assert counted.reads["contact_events_many"] == 2
