"""Steps: waits of each kind, branches, contact updates and exits, as a run walks through them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.factories import (
    T0,
    after,
    kinds,
    make_contact,
    make_event,
    make_state,
    messages_of,
    run_of,
)
from tidings.engine.core import Environment, on_event, on_timer
from tidings.model.runs import Outcome, RunStatus
from tidings.model.trace import TraceKind

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def start(workflow, env: Environment, event=None, *, contact=None, history=()):
    """Run a workflow triggered by `go` (or `event`) at T0; return the decision."""
    event = event or make_event("go", cart_id="k1", total=30)
    state = make_state(contact=contact, history=history)
    return on_event([workflow], state, event, T0, env)


def test_if_takes_then_or_else_and_traces_the_value(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: branch
        trigger: {event: go}
        steps:
          - if: "event.properties.total >= 50"
            then:
              - exit: big cart
            else:
              - exit: small cart
        """
    )
    small = run_of(start(workflow, env))
    assert (small.outcome, small.reason, small.position) == (
        Outcome.exited_step,
        "small cart",
        "0/else/0",
    )
    big_decision = start(workflow, env, make_event("go", total=80))
    assert run_of(big_decision).reason == "big cart"
    assert messages_of(big_decision, TraceKind.condition) == [
        "event.properties.total >= 50 is True: then"
    ]
    assert big_decision.trace[-1].kind is TraceKind.exited


def test_if_conditions_see_history_since_the_run_started(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: history
        trigger: {event: go}
        steps:
          - if: 'has_event("order_completed", since=run.started_at) or count_events("order_completed", within="30d") >= 2'
            then: [{exit: loyal}]
            else: [{exit: new}]
        """
    )
    old_orders = [make_event("order_completed", T0 - n * DAY, order=n) for n in (40, 20, 10)]
    assert run_of(start(workflow, env, history=old_orders[:2])).reason == "new"
    assert run_of(start(workflow, env, history=old_orders)).reason == "loyal"


def test_a_condition_that_cannot_be_evaluated_ends_the_run_with_error(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: broken
        trigger: {event: go}
        steps:
          - if: "event.properties.missing > 1"
            then: [{send_email: {template: cart}}]
          - send_email: {template: cart}
        """
    )
    decision = start(workflow, env)
    run = run_of(decision)
    assert (run.status, run.outcome, run.reason) == (
        RunStatus.finished,
        Outcome.error,
        "condition failed",
    )
    [error] = messages_of(decision, TraceKind.error)
    assert "missing" in error
    assert decision.messages == []  # neither branch, nothing after


def test_update_contact_sets_typed_and_text_values_and_removes_nulls(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: update
        trigger: {event: go}
        steps:
          - update_contact:
              LAST_CART: "{{ event.properties.cart_id }}"
              CART_TOTAL: "{{ event.properties.total }}"
              VIP: "{{ event.properties.total > 20 }}"
              ZIP: "{{ '01234' }}"
              NOTE: "total {{ event.properties.total }}"
              SOURCE: web
              VISITS: 3
              FIRSTNAME: null
        """
    )
    decision = start(workflow, env)
    assert decision.contact is not None
    assert decision.contact.attributes == {
        "LAST_CART": "k1",
        "CART_TOTAL": 30,
        "VIP": True,
        "ZIP": "01234",
        "NOTE": "total 30",
        "SOURCE": "web",
        "VISITS": 3,
    }
    assert decision.contact.updated_at == T0
    assert TraceKind.update_contact in kinds(decision)


def test_a_later_step_sees_the_updated_contact(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: update_then_branch
        trigger: {event: go}
        steps:
          - update_contact: {TIER: gold}
          - if: "contact.TIER == 'gold'"
            then: [{exit: gold}]
        """
    )
    assert run_of(start(workflow, env)).reason == "gold"


def test_an_update_whose_template_fails_changes_nothing_and_the_run_carries_on(
    make_workflow, env
) -> None:
    workflow = make_workflow(
        """
        id: update_fails
        trigger: {event: go}
        steps:
          - update_contact:
              A: ok
              B: "{{ event.properties.nope.deeper }}"
          - exit: carried on
        """
    )
    decision = start(workflow, env)
    assert decision.contact is None
    assert run_of(decision).reason == "carried on"
    [error] = messages_of(decision, TraceKind.error)
    assert error.startswith("contact not updated:") and "nope" in error


def test_wait_until_a_time_of_day_uses_the_contacts_zone(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: morning
        timezone: America/New_York
        trigger: {event: go}
        steps:
          - wait: {until: "09:00", weekdays: [sat, sun]}
          - send_email: {template: cart}
        """
    )
    # T0 is Monday 2 June 2025 12:00 in Paris: next weekend morning is Saturday 09:00 CEST
    assert run_of(start(workflow, env)).due_at == T0.replace(day=7, hour=7)
    # a contact without a zone falls back to the workflow's: Saturday 09:00 EDT
    no_zone = make_contact(timezone=None)
    assert run_of(start(workflow, env, contact=no_zone)).due_at == T0.replace(day=7, hour=13)


def test_wait_until_a_date_from_the_event_with_an_offset_in_the_contacts_zone(
    make_workflow, env
) -> None:
    workflow = make_workflow(
        """
        id: appointment
        trigger: {event: booked}
        steps:
          - wait: {date: event.properties.appointment_at, offset: -24h}
          - send_sms: {text: "See you tomorrow"}
        """
    )
    # a naive appointment time is Paris time: 10 June 15:00 CEST = 13:00 UTC, minus a day
    event = make_event("booked", appointment_at="2025-06-10T15:00:00")
    decision = start(workflow, env, event)
    assert run_of(decision).due_at == T0.replace(day=9, hour=13)
    assert messages_of(decision, TraceKind.wait) == ["waiting until 2025-06-09T13:00:00+00:00"]
    # in New York the same local time is 19:00 UTC
    new_yorker = make_contact(timezone="America/New_York")
    assert run_of(start(workflow, env, event, contact=new_yorker)).due_at == T0.replace(
        day=9, hour=19
    )


def test_a_date_already_past_is_due_now_and_the_trace_says_so(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: appointment
        trigger: {event: booked}
        steps:
          - wait: {date: "event.properties.appointment_at", offset: -24h}
          - send_sms: {text: "See you tomorrow"}
        """
    )
    event = make_event("booked", appointment_at="2025-06-02T20:00:00+02:00")
    decision = start(workflow, env, event)
    run = run_of(decision)
    assert (run.status, run.due_at) == (RunStatus.waiting, T0)
    [wait] = messages_of(decision, TraceKind.wait)
    assert wait.startswith("the date is already past: due now")
    fired = on_timer(workflow, run, after(make_state(), decision), T0, env)
    assert [m.text for m in fired.messages] == ["See you tomorrow"]


@pytest.mark.parametrize("value", ["not a date", None])
def test_a_wait_date_that_cannot_be_computed_ends_the_run_with_error(
    make_workflow, env, value
) -> None:
    workflow = make_workflow(
        """
        id: appointment
        trigger: {event: booked}
        steps:
          - wait: {date: event.properties.appointment_at}
          - send_sms: {text: "See you"}
        """
    )
    decision = start(workflow, env, make_event("booked", appointment_at=value))
    run = run_of(decision)
    assert (run.outcome, run.reason) == (Outcome.error, "wait date failed")
    assert decision.messages == []
    [error] = messages_of(decision, TraceKind.error)
    assert error.startswith("cannot compute the wait's date")


def test_wait_for_arms_a_timeout_and_remembers_when_it_began(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: follow_up
        trigger: {event: go}
        steps:
          - wait_for: {event: [order_completed, cart_emptied], timeout: 2d}
        """
    )
    decision = start(workflow, env)
    run = run_of(decision)
    assert (run.status, run.position, run.waiting_for, run.due_at) == (
        RunStatus.waiting,
        "0",
        ("order_completed", "cart_emptied"),
        T0 + 2 * DAY,
    )
    assert run.vars["wait_started_at"] == T0.isoformat()
    assert messages_of(decision, TraceKind.wait_for) == [
        f"waiting for order_completed, cart_emptied until {(T0 + 2 * DAY).isoformat()} (timeout 2d)"
    ]


def test_a_run_whose_position_is_not_in_the_workflow_given_ends_with_error(
    make_workflow, env
) -> None:
    v1 = make_workflow(
        """
        id: changed
        trigger: {event: go}
        steps:
          - send_sms: {text: one}
          - wait: 1h
          - send_sms: {text: two}
        """
    )
    v2 = make_workflow(
        """
        id: changed
        trigger: {event: go}
        steps:
          - wait: 1h
        """
    )
    decision = start(v1, env)
    run = run_of(decision)
    assert run.position == "1"
    fired = on_timer(v2, run, after(make_state(), decision), T0 + HOUR, env)
    assert run_of(fired).outcome is Outcome.error
    assert fired.messages == []
