"""`explain` as text: the trace of every decision, runs, messages, and what is due next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support.messages import make_message
from tidings.adapters.memory import MemoryStore
from tidings.model.contacts import Channel, Contact
from tidings.model.events import IdentifierKind
from tidings.model.messages import MessageStatus
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.service.explain import ContactReport, explain, find_contact, read_report

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def contact(**overrides: object) -> Contact:
    fields: dict[str, object] = {
        "id": "42",
        "identifiers": {
            IdentifierKind.email_id: "ann@example.com",
            IdentifierKind.ext_id: "u-7",
            IdentifierKind.phone_id: "+33612345678",
        },
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return Contact.model_validate(fields)


def run(run_id: str, **overrides: object) -> Run:
    fields: dict[str, object] = {
        "id": run_id,
        "workflow_id": "cart",
        "workflow_version": "v1",
        "contact_id": "42",
        "key": "K1",
        "status": RunStatus.waiting,
        "position": "1",
        "due_at": T0 + timedelta(hours=1),
        "started_at": T0,
        "updated_at": T0,
        "trigger_event_id": "e1",
    }
    fields.update(overrides)
    return Run.model_validate(fields)


def trace(minutes: int, kind: TraceKind, message: str, **overrides: object) -> TraceEntry:
    fields: dict[str, object] = {
        "at": T0 + timedelta(minutes=minutes),
        "contact_id": "42",
        "workflow_id": "cart",
        "kind": kind,
        "message": message,
    }
    fields.update(overrides)
    return TraceEntry.model_validate(fields)


def test_explain_tells_the_story_of_each_workflow_and_what_comes_next() -> None:
    report = ContactReport(
        contact=contact(unsubscribed=frozenset({Channel.sms})),
        runs=[
            run(
                "r1",
                status=RunStatus.finished,
                due_at=None,
                outcome=Outcome.exited_goal,
                reason="bought",
                finished_at=T0 + timedelta(minutes=10),
            ),
            run(
                "r2",
                key="K2",
                started_at=T0 + timedelta(minutes=20),
                position="1",
                due_at=T0 + timedelta(hours=1, minutes=20),
            ),
            run(
                "r3",
                workflow_id="welcome",
                key="",
                status=RunStatus.finished,
                due_at=None,
                outcome=Outcome.finished,
                reason="end of steps",
            ),
        ],
        trace=[
            trace(
                0, TraceKind.trigger_matched, "cart_updated matched the trigger of cart (key 'K1')"
            ),
            trace(
                0, TraceKind.wait, "waiting until 2030-01-07T10:00:00+00:00", run_id="r1", step="0"
            ),
            trace(10, TraceKind.exited, "run exited_goal: bought", run_id="r1", step="1"),
            trace(
                20, TraceKind.wait, "waiting until 2030-01-07T10:20:00+00:00", run_id="r2", step="0"
            ),
            trace(0, TraceKind.send, "email 'welcome' queued", workflow_id="welcome", step="0"),
            trace(
                0,
                TraceKind.skip,
                "sms 'hello' skipped: unsubscribed from sms",
                workflow_id="welcome",
                step="1",
            ),
            trace(
                5, TraceKind.update_contact, "unsubscribed from sms (sms reply)", workflow_id="*"
            ),
        ],
        messages=[
            make_message(
                1,
                workflow_id="welcome",
                contact_id="42",
                to="ann@example.com",
                subject="Welcome",
                status=MessageStatus.sent,
                sent_at=T0 + timedelta(seconds=3),
                provider_id="<r3.0.0@tidings>",
                attempts=1,
            ),
            make_message(
                2,
                workflow_id="cart",
                contact_id="42",
                to="ann@example.com",
                subject="Your cart",
                attempts=2,
                next_attempt_at=T0 + timedelta(minutes=45),
                last_error="421 busy",
                created_at=T0,
                not_before=T0,
            ),
        ],
    )

    text = explain(report, now=T0 + timedelta(minutes=30))

    assert text.splitlines() == [
        "Contact 42 (email_id=ann@example.com, ext_id=u-7, phone_id=+33612345678)",
        "  unsubscribed from: sms",
        "",
        "General",
        "  2030-01-07 09:05:00 UTC  update_contact  unsubscribed from sms (sms reply)",
        "",
        "Workflow cart",
        "  run r1: started 2030-01-07 09:00:00 UTC, key 'K1'; exited_goal at 2030-01-07 09:10:00 UTC: bought",
        "  run r2: started 2030-01-07 09:20:00 UTC, key 'K2'; waiting at step 1, due 2030-01-07 10:20:00 UTC (in 50m)",
        "  2030-01-07 09:00:00 UTC  trigger_matched cart_updated matched the trigger of cart (key 'K1')",
        "  2030-01-07 09:00:00 UTC  wait            waiting until 2030-01-07T10:00:00+00:00 [step 0]",
        "  2030-01-07 09:10:00 UTC  exited          run exited_goal: bought [step 1]",
        "  2030-01-07 09:20:00 UTC  wait            waiting until 2030-01-07T10:20:00+00:00 [step 0]",
        "  messages:",
        "    email 'Your cart' to ann@example.com: pending, 2 attempt(s), next 2030-01-07 09:45:00 UTC (in 15m), last error: 421 busy",
        "",
        "Workflow welcome",
        "  run r3: started 2030-01-07 09:00:00 UTC; finished: end of steps",
        "  2030-01-07 09:00:00 UTC  send            email 'welcome' queued [step 0]",
        "  2030-01-07 09:00:00 UTC  skip            sms 'hello' skipped: unsubscribed from sms [step 1]",
        "  messages:",
        "    email 'Welcome' to ann@example.com: sent 2030-01-07 09:00:03 UTC (<r3.0.0@tidings>)",
        "",
        "Next:",
        "  2030-01-07 09:45:00 UTC (in 15m)  email 'Your cart' to ann@example.com: delivery",
        "  2030-01-07 10:20:00 UTC (in 50m)  cart run r2 continues after step 1",
    ]


def test_explain_with_nothing_waiting_says_so() -> None:
    report = ContactReport(contact=contact(identifiers={}), runs=[], trace=[], messages=[])

    assert explain(report, now=T0) == "Contact 42\n\nNext: nothing is waiting\n"


def test_a_run_waiting_for_an_event_says_what_ends_the_wait() -> None:
    waiting = run("r9", waiting_for=("order_completed",), due_at=T0 - timedelta(minutes=2))
    report = ContactReport(contact(), [waiting], [], [], workflow_id="cart")

    text = explain(report, now=T0)

    assert (
        "  run r9: started 2030-01-07 09:00:00 UTC, key 'K1'; waiting at step 1 for "
        "order_completed, due 2030-01-07 08:58:00 UTC (2m ago)" in text
    )
    assert text.endswith(
        "  2030-01-07 08:58:00 UTC (2m ago)  cart run r9 continues after step 1"
        " (unless order_completed arrives first)\n"
    )


@pytest.mark.parametrize(
    ("reference", "found"),
    [
        ("42", "42"),
        ("ANN@example.com", "42"),
        ("u-7", "42"),
        ("+33 6 12 34 56 78", "42"),
        ("bob@example.com", None),
        ("", None),
    ],
)
def test_a_contact_is_found_by_id_or_any_identifier(reference: str, found: str | None) -> None:
    store = MemoryStore()
    with store.transaction() as uow:
        uow.save_contact(contact())
        match = find_contact(uow, reference)

    assert (match.id if match else None) == found


def test_read_report_limits_everything_to_one_workflow_when_asked() -> None:
    store = MemoryStore()
    with store.transaction() as uow:
        uow.save_contact(contact())
        uow.save_runs([run("r1"), run("r2", workflow_id="welcome")])
        uow.add_trace(
            [trace(0, TraceKind.wait, "a"), trace(1, TraceKind.send, "b", workflow_id="welcome")]
        )

    report = read_report(store, "ann@example.com", "welcome")

    assert report is not None
    assert [r.id for r in report.runs] == ["r2"]
    assert [t.message for t in report.trace] == ["b"]
    assert read_report(store, "nobody@example.com") is None
