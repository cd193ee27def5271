"""Triggers: conditions, keys, re-entry and cooldown, and the four modes per contact and key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from engine.factories import T0, after, kinds, make_event, make_state, messages_of, run_of
from tidings.compile.loader import CompiledWorkflow
from tidings.engine.core import Environment, on_event, on_timer
from tidings.engine.triggers import run_id
from tidings.model.runs import Outcome, RunStatus
from tidings.model.trace import TraceKind

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

CART = """
id: cart
trigger:
  event: cart_updated
  if: "event.properties.total > 0"
key: "{{{{ event.properties.cart_id }}}}"
mode: {mode}
max: 2
{extra}
steps:
  - wait: 1h
  - send_email: {{template: cart}}
"""

MakeWorkflow = Callable[[str], CompiledWorkflow]


@pytest.fixture
def cart(make_workflow: MakeWorkflow) -> Callable[..., CompiledWorkflow]:
    def _cart(mode: str = "single", extra: str = "") -> CompiledWorkflow:
        return make_workflow(CART.format(mode=mode, extra=extra))

    return _cart


def updated(cart_id: str = "k1", at=T0, total: float = 30) -> object:
    return make_event("cart_updated", at, cart_id=cart_id, total=total)


def test_a_matching_event_starts_a_run_keyed_by_the_key_template(cart, env: Environment) -> None:
    # Given a cart workflow, When a cart_updated with a positive total arrives
    event = updated("k1")
    decision = on_event([cart()], make_state(), event, T0, env)
    # Then one run starts for key k1 and waits an hour before its email
    run = run_of(decision)
    assert run.id == run_id("cart", "c1", "k1", event.id)
    assert (run.key, run.status, run.position, run.due_at) == (
        "k1",
        RunStatus.waiting,
        "0",
        T0 + HOUR,
    )
    assert run.event["properties"] == {"cart_id": "k1", "total": 30}
    assert kinds(decision) == [TraceKind.trigger_matched, TraceKind.run_started, TraceKind.wait]
    assert decision.messages == []


def test_a_false_trigger_condition_starts_nothing_and_says_why(cart, env: Environment) -> None:
    decision = on_event([cart()], make_state(), updated(total=0), T0, env)
    assert decision.runs == []
    assert messages_of(decision, TraceKind.trigger_skipped) == [
        "cart_updated did not start cart: a trigger condition is false"
    ]


def test_other_events_and_disabled_workflows_leave_no_trace(cart, make_workflow, env) -> None:
    assert on_event([cart()], make_state(), make_event("page_viewed"), T0, env).is_empty
    disabled = make_workflow(CART.format(mode="single", extra="enabled: false"))
    assert on_event([disabled], make_state(), updated(), T0, env).is_empty


def test_a_workflow_without_key_runs_under_the_empty_key(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: welcome
        trigger: {event: signed_up}
        steps:
          - send_email: {template: cart}
        """
    )
    event = make_event("signed_up", cart_id="x", total=1)
    run = run_of(on_event([workflow], make_state(), event, T0, env))
    assert run.key == ""
    assert (run.status, run.outcome) == (RunStatus.finished, Outcome.finished)


def test_a_trigger_condition_that_cannot_be_evaluated_is_an_error_not_a_run(cart, env) -> None:
    event = make_event("cart_updated", cart_id="k1")  # no `total`
    decision = on_event([cart()], make_state(), event, T0, env)
    assert decision.runs == []
    [error] = messages_of(decision, TraceKind.error)
    assert "total" in error and "event.properties.total > 0" in error


def test_the_same_event_processed_twice_does_not_fork_its_run(cart, env) -> None:
    # Given the event already started a run (in parallel mode, which would allow another)
    workflow = cart("parallel")
    first = on_event([workflow], make_state(), updated(), T0, env)
    state = after(make_state(), first)
    # When the same event is processed again
    again = on_event([workflow], state, updated(), T0 + HOUR / 2, env)
    # Then nothing new starts
    assert again.runs == []
    assert messages_of(again, TraceKind.trigger_skipped) == [
        f"cart_updated did not start cart: this event already started run {first.runs[0].id}"
    ]


# ---------------------------------------------------------------------------------- modes


def test_single_ignores_a_trigger_while_the_key_has_an_active_run(cart, env) -> None:
    workflow = cart("single")
    state = after(make_state(), on_event([workflow], make_state(), updated("k1"), T0, env))
    same_key = on_event([workflow], state, updated("k1", T0 + HOUR / 2, 40), T0 + HOUR / 2, env)
    assert same_key.runs == []
    [reason] = messages_of(same_key, TraceKind.trigger_skipped)
    assert "is already active for this key (mode single)" in reason
    other_key = on_event([workflow], state, updated("k2", T0 + HOUR / 2), T0 + HOUR / 2, env)
    assert run_of(other_key).key == "k2"


def test_restart_ends_the_active_run_and_starts_anew(cart, env) -> None:
    workflow = cart("restart")
    first = run_of(on_event([workflow], make_state(), updated("k1"), T0, env))
    state = make_state(runs=[first])
    later = T0 + HOUR / 2
    decision = on_event([workflow], state, updated("k1", later, 40), later, env)
    old, new = decision.runs
    assert (old.id, old.status, old.outcome) == (first.id, RunStatus.finished, Outcome.restarted)
    assert (new.status, new.due_at, new.event["properties"]["total"]) == (
        RunStatus.waiting,
        later + HOUR,
        40,
    )


def test_queued_waits_behind_the_active_run_up_to_max_and_starts_when_it_finishes(
    cart, env
) -> None:
    workflow = cart("queued")
    state = make_state()
    # Given an active run and two queued behind it (max 2)
    for minutes in (0, 10, 20):
        at = T0 + timedelta(minutes=minutes)
        state = after(state, on_event([workflow], state, updated("k1", at, 10 + minutes), at, env))
    active, *queued = state.runs
    assert active.status is RunStatus.waiting
    assert [r.status for r in queued] == [RunStatus.queued, RunStatus.queued]
    # When a third trigger comes, it is refused: the line is full
    full = on_event([workflow], state, updated("k1", T0 + HOUR / 2, 99), T0 + HOUR / 2, env)
    assert full.runs == []
    assert (
        "2 runs already queued for this key (max 2)"
        in messages_of(full, TraceKind.trigger_skipped)[0]
    )
    # When the active run's wait ends, it sends, finishes, and the oldest queued run starts
    decision = on_timer(workflow, active, state, T0 + HOUR, env)
    finished, started = decision.runs
    assert (finished.id, finished.outcome) == (active.id, Outcome.finished)
    assert started.id == queued[0].id
    assert (started.status, started.started_at, started.due_at) == (
        RunStatus.waiting,
        T0 + HOUR,
        T0 + 2 * HOUR,
    )
    assert [m.subject for m in decision.messages] == ["Ann, your cart k1"]


def test_parallel_runs_side_by_side_up_to_max(cart, env) -> None:
    workflow = cart("parallel")
    state = make_state()
    for minutes in (0, 10):
        at = T0 + timedelta(minutes=minutes)
        decision = on_event([workflow], state, updated("k1", at, 10 + minutes), at, env)
        assert run_of(decision).status is RunStatus.waiting
        state = after(state, decision)
    third = on_event([workflow], state, updated("k1", T0 + HOUR / 2, 5), T0 + HOUR / 2, env)
    assert third.runs == []
    assert (
        "2 runs already active for this key (max 2)"
        in messages_of(third, TraceKind.trigger_skipped)[0]
    )


# ---------------------------------------------------------------------------------- re-entry


def test_reentry_not_allowed_refuses_a_key_that_ever_ran(cart, env) -> None:
    workflow = cart("single", "reentry: {allowed: false}")
    first = on_event([workflow], make_state(), updated("k1"), T0, env)
    done = on_timer(workflow, run_of(first), after(make_state(), first), T0 + HOUR, env)
    state = after(after(make_state(), first), done)
    assert state.runs == []  # finished long ago
    much_later = T0 + 100 * DAY
    again = on_event([workflow], state, updated("k1", much_later), much_later, env)
    assert again.runs == []
    [reason] = messages_of(again, TraceKind.trigger_skipped)
    assert "re-entry is not allowed" in reason
    other = on_event([workflow], state, updated("k2", much_later), much_later, env)
    assert run_of(other).key == "k2"


@pytest.mark.parametrize(
    ("since_last_start", "starts"),
    [(3 * DAY, False), (7 * DAY - timedelta(seconds=1), False), (7 * DAY, True), (8 * DAY, True)],
)
def test_cooldown_counts_from_the_last_runs_start(cart, env, since_last_start, starts) -> None:
    workflow = cart("restart", "reentry: {cooldown: 7d}")
    first = on_event([workflow], make_state(), updated("k1"), T0, env)
    state = after(make_state(), first)
    at = T0 + since_last_start
    decision = on_event([workflow], state, updated("k1", at, 50), at, env)
    started = [r for r in decision.runs if r.status is RunStatus.waiting]
    assert bool(started) is starts
    if not starts:
        [reason] = messages_of(decision, TraceKind.trigger_skipped)
        assert reason.endswith(f"until {(T0 + 7 * DAY).isoformat()}")
