"""The simulation report: figures from the decisions a replay writes, deterministic JSON, the
contact timeline, and the chart built from it."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tidings.adapters.memory import MemoryStore
from tidings.compile.loader import CompiledWorkflow, load_workflow_text
from tidings.compile.templates import TemplateCatalog
from tidings.engine.core import Decision
from tidings.model.contacts import Channel, Contact
from tidings.model.events import Event, IdentifierKind
from tidings.model.messages import Message
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceEntry, TraceKind
from tidings.service.chart import render_chart
from tidings.service.replay import RowProblem
from tidings.service.simulation_report import (
    ReportBuilder,
    SimulationReport,
    Totals,
    contact_timeline,
    iso,
    reason_of,
)

T0 = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)

WORKFLOW = """
    id: cart
    name: Cart
    trigger: {event: cart_updated}
    steps:
      - wait: 1h
      - send_email: {template: cart}
      - wait: 1d
      - send_sms: {text: "Still there?"}
    """


@pytest.fixture
def workflow(tmp_path: Path) -> CompiledWorkflow:
    (tmp_path / "cart.email.html").write_text('---\nsubject: "Cart"\n---\n<p>Hi</p>\n')
    catalog = TemplateCatalog.load(tmp_path)
    loaded = load_workflow_text(textwrap.dedent(WORKFLOW), "cart", catalog)
    assert loaded.workflow is not None, loaded.problems
    return loaded.workflow


def run(run_id: str, status: RunStatus, at: datetime, **fields: Any) -> Run:
    return Run(
        id=run_id,
        workflow_id="cart",
        workflow_version="v1",
        contact_id="1",
        status=status,
        started_at=T0,
        updated_at=at,
        trigger_event_id="e1",
        **fields,
    )


def note(kind: TraceKind, message: str, at: datetime = T0, workflow_id: str = "cart") -> TraceEntry:
    return TraceEntry(at=at, contact_id="1", workflow_id=workflow_id, kind=kind, message=message)


def message(key: str, step: str, at: datetime, *, deferred: bool = False) -> Message:
    return Message(
        key=key,
        channel=Channel.email,
        run_id="r1",
        contact_id="1",
        workflow_id="cart",
        step=step,
        to="ann@example.com",
        subject=f"Subject {key}",
        text="\n\nLine one\n  Line two  \nLine three\nLine four\nLine five\n",
        created_at=at,
        not_before=at + timedelta(hours=9) if deferred else at,
    )


def totals(**overrides: Any) -> Totals:
    base: dict[str, Any] = {
        "rows": 3,
        "events": 3,
        "refused": 0,
        "skipped": 0,
        "replayed": 3,
        "history": 0,
        "duplicates": 0,
        "after_until": 0,
        "timers": 2,
        "messages": 2,
        "first_event": iso(T0),
        "last_event": iso(T0 + timedelta(minutes=30)),
        "end": iso(T0 + timedelta(hours=2)),
    }
    return Totals(**{**base, **overrides})


@pytest.mark.parametrize(
    ("kind", "text", "reason"),
    [
        (
            TraceKind.trigger_skipped,
            "cart_updated did not start cart: run 0123456789abcdef0123 is already active",
            "not started: run … is already active",
        ),
        (
            TraceKind.trigger_skipped,
            "visited did not start cart: in cooldown (1w after run 0123456789abcdef0123 started)"
            " until 2030-03-11T10:00:00+00:00",
            "not started: in cooldown (1w after run … started) until …",
        ),
        (
            TraceKind.trigger_skipped,
            "order_completed did not start cart: re-entry is not allowed and run"
            " 0123456789abcdef0123 already ran for key 'K-42'",
            "not started: re-entry is not allowed and run … already ran for key …",
        ),
        (
            TraceKind.skip,
            "email 'cart' skipped: no email address",
            "email 'cart' skipped: no email address",
        ),
        (
            TraceKind.error,
            "event visited (L12-0123456789ab) not applied: boom",
            "event visited (…) not applied: boom",
        ),
    ],
)
def test_reasons_group_without_ids_keys_or_times(kind: TraceKind, text: str, reason: str) -> None:
    assert reason_of(kind, "cart", text) == reason
    assert reason_of(kind, "cart", text) == reason  # asked again (it is remembered): the same


def test_a_remembered_reason_is_the_one_of_its_own_kind_and_workflow() -> None:
    text = "visited did not start cart: in cooldown"
    assert reason_of(TraceKind.trigger_skipped, "cart", text) == "not started: in cooldown"
    assert reason_of(TraceKind.skip, "cart", text) == text
    assert reason_of(TraceKind.trigger_skipped, "back", text) == text


def test_runs_are_counted_when_they_start_and_when_they_end_by_outcome(
    workflow: CompiledWorkflow,
) -> None:
    builder = ReportBuilder([workflow])
    later = T0 + timedelta(hours=1)
    builder.observe(
        T0,
        Decision(
            runs=[run("r1", RunStatus.waiting, T0), run("r2", RunStatus.waiting, T0)],
            trace=[note(TraceKind.run_started, "run started")] * 2,
        ),
    )
    ended = run("r1", RunStatus.finished, later, outcome=Outcome.exited_goal, finished_at=later)
    builder.observe(later, Decision(runs=[ended]))
    builder.observe(later, Decision(runs=[ended]))  # written again later: not a second end

    [figures] = builder.build(source="log.jsonl", totals=totals(), refused=[], skipped={}).workflows
    assert (figures.runs_started, figures.outcomes) == (2, {"exited_goal": 1})
    assert (figures.waiting, figures.queued) == (1, 0)


def test_messages_are_counted_per_step_with_the_first_ones_kept_as_samples(
    workflow: CompiledWorkflow,
) -> None:
    builder = ReportBuilder([workflow], samples=2)
    for n in range(3):
        at = T0 + timedelta(minutes=20 * n)
        builder.observe(at, Decision(messages=[message(f"m{n}", "1", at, deferred=n == 2)]))
    builder.observe(T0, Decision(trace=[note(TraceKind.skip, "SMS skipped: no phone number")]))

    [figures] = builder.build(source="log.jsonl", totals=totals(), refused=[], skipped={}).workflows
    assert [(s.step, s.action, s.template, s.messages, s.deferred) for s in figures.steps] == [
        ("1", "send_email", "cart", 3, 1)
    ]
    assert [s.subject for s in figures.samples] == ["Subject m0", "Subject m1"]
    assert figures.samples[0].lines == ["Line one", "Line two", "Line three", "Line four"]
    assert figures.messages_after_last_event == 1  # the one at +40 min; the file ends at +30
    assert figures.skips == {"SMS skipped: no phone number": 1}


def test_a_message_deferred_by_quiet_hours_counts_and_shows_when_it_goes(
    workflow: CompiledWorkflow,
) -> None:
    builder = ReportBuilder([workflow])
    at = T0 + timedelta(minutes=10)  # recorded before the file's last event (+30 min)...
    builder.observe(at, Decision(messages=[message("m", "1", at, deferred=True)]))

    [figures] = builder.build(source="log.jsonl", totals=totals(), refused=[], skipped={}).workflows
    # ...but it goes 9 hours later, after it: that is what a reader of the report asks about.
    assert figures.messages_after_last_event == 1
    assert figures.samples[0].at == iso(at + timedelta(hours=9))


def test_the_series_counts_messages_and_the_peak_of_runs_waiting_per_bucket(
    workflow: CompiledWorkflow,
) -> None:
    builder = ReportBuilder([workflow])
    builder.observe(T0, Decision(runs=[run(f"r{n}", RunStatus.waiting, T0) for n in range(3)]))
    at = T0 + timedelta(minutes=25)
    done = [
        run(f"r{n}", RunStatus.finished, at, outcome=Outcome.finished, finished_at=at)
        for n in range(2)
    ]
    builder.observe(at, Decision(runs=done, messages=[message("m", "1", at)]))

    series = builder.build(source="x", totals=totals(), refused=[], skipped={}).series
    assert (series.start, series.bucket_minutes) == (iso(T0), 10)
    assert series.messages == [0, 0, 1] + [0] * 10
    assert series.waiting == [3, 3, 3] + [1] * 10


def test_the_report_json_is_deterministic_and_lists_refused_rows_by_line(
    workflow: CompiledWorkflow,
) -> None:
    def build() -> str:
        builder = ReportBuilder([workflow])
        builder.observe(T0, Decision(messages=[message("m", "1", T0)]))
        refused = [RowProblem(9, "bad date"), RowProblem(2, "bad JSON")]
        return builder.build(
            source="log.jsonl", totals=totals(refused=2), refused=refused, skipped={"x": 1}
        ).to_json()

    text = build()

    assert text == build()
    document = json.loads(text)
    assert document["refused"] == [
        {"line": 2, "reason": "bad JSON"},
        {"line": 9, "reason": "bad date"},
    ]
    assert document["totals"]["end"] == "2030-03-04T12:00:00+00:00"
    assert [w["id"] for w in document["workflows"]] == ["cart"]


def test_a_contact_timeline_reads_events_then_decisions_then_messages_in_time_order() -> None:
    store = MemoryStore()
    contact = Contact(
        id="7",
        identifiers={IdentifierKind.ext_id: "u-7"},
        created_at=T0,
        updated_at=T0,
    )
    later = T0 + timedelta(hours=1)
    with store.transaction() as uow:
        uow.save_contact(contact)
        uow.add_event(
            Event(
                id="e1",
                name="cart_updated",
                identifiers={IdentifierKind.ext_id: "u-7"},
                occurred_at=T0,
                received_at=T0,
                contact_id="7",
                properties={"total": 3},
            )
        )
        uow.add_messages([message("m", "1", later).model_copy(update={"contact_id": "7"})])
        uow.add_trace(
            [
                TraceEntry(
                    at=later,
                    contact_id="7",
                    workflow_id="cart",
                    kind=TraceKind.send,
                    message="sent",
                ),
                TraceEntry(
                    at=T0, contact_id="7", workflow_id="cart", kind=TraceKind.wait, message="1h"
                ),
            ]
        )

    with store.transaction() as uow:
        found = contact_timeline(uow, "u-7")
        missing = contact_timeline(uow, "nobody")

    assert missing is None
    assert found is not None
    contact_id, timeline = found
    assert contact_id == "7"
    assert [(e.at, e.kind, e.text) for e in timeline] == [
        (iso(T0), "event", 'cart_updated {"total": 3}'),
        (iso(T0), "wait", "1h"),
        (iso(later), "send", "sent"),
        (iso(later), "message", "email to ann@example.com: Subject m"),
    ]


def test_the_chart_is_one_html_file_with_inline_svg_and_nothing_fetched(
    workflow: CompiledWorkflow,
) -> None:
    builder = ReportBuilder([workflow])
    at = T0 + timedelta(minutes=25)
    builder.observe(T0, Decision(runs=[run("r1", RunStatus.waiting, T0)]))
    builder.observe(at, Decision(messages=[message("m1", "1", at), message("m2", "1", at)]))
    report: SimulationReport = builder.build(
        source="a <b>.jsonl", totals=totals(), refused=[], skipped={}
    )

    html = render_chart(report)

    assert html.startswith("<!DOCTYPE html>") and html.count("<svg") == 2
    assert "a &lt;b&gt;.jsonl" in html and "<b>" not in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert "<title>2</title>" in html  # the bar of the bucket with two messages
    assert "Messages recorded per 10 minutes" in html
    assert render_chart(report) == html
