"""The two entry points: goals, wait_for by event or timeout, late timers, idempotence, determinism."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.factories import T0, after, kinds, make_event, make_state, messages_of, run_of
from tidings.engine.core import ContactState, Decision, Environment, on_event, on_timer
from tidings.model.runs import Outcome, Run, RunStatus
from tidings.model.trace import TraceKind

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

ABANDONED = """
id: abandoned
trigger: {{event: cart_updated}}
key: "{{{{ event.properties.cart_id }}}}"
mode: {mode}
exit:
  - event: order_completed
    if: "event.properties.cart_id == run.key"
    reason: bought
late: {late}
steps:
  - wait: 1h
  - send_email: {{template: cart}}
  - wait_for:
      event: cart_viewed
      if: "event.properties.cart_id == run.key"
      timeout: 1d
      on_event:
        - send_sms: {{text: "Back at {{{{ event.name }}}} {{{{ params.cart_id }}}}"}}
      on_timeout:
        - send_sms: {{template: cart}}
  - exit: done
"""


@pytest.fixture
def abandoned(make_workflow):
    def _make(mode: str = "restart", late: str = "{policy: skip, limit: 2h}"):
        return make_workflow(ABANDONED.format(mode=mode, late=late))

    return _make


def cart(cart_id: str = "k1", at=T0):
    return make_event("cart_updated", at, cart_id=cart_id, total=30)


def started(workflow, env: Environment) -> ContactState:
    """Ann's state once a cart_updated for k1 started a run at T0 (waiting an hour)."""
    return after(make_state(), on_event([workflow], make_state(), cart(), T0, env))


def at_wait_for(workflow, env: Environment) -> tuple[ContactState, Decision]:
    """Ann's state once the hour passed and the email went: waiting for cart_viewed."""
    state = started(workflow, env)
    fired = on_timer(workflow, state.runs[0], state, T0 + HOUR, env)
    return after(state, fired), fired


# ---------------------------------------------------------------------------------- goals


def test_a_goal_ends_a_waiting_run_at_once(abandoned, env) -> None:
    workflow = abandoned()
    state = started(workflow, env)
    # When Ann completes the order for that cart half an hour later
    order = make_event("order_completed", T0 + HOUR / 2, cart_id="k1")
    decision = on_event([workflow], state, order, T0 + HOUR / 2, env)
    # Then the run ends with the goal, before any email
    run = run_of(decision)
    assert (run.status, run.outcome, run.reason, run.due_at) == (
        RunStatus.finished,
        Outcome.exited_goal,
        "bought",
        None,
    )
    assert decision.messages == []
    assert kinds(decision) == [TraceKind.exited]


def test_a_goal_whose_condition_is_false_leaves_the_run_alone(abandoned, env) -> None:
    workflow = abandoned()
    other_cart = make_event("order_completed", T0 + HOUR / 2, cart_id="k2")
    assert on_event([workflow], started(workflow, env), other_cart, T0 + HOUR / 2, env).is_empty


def test_a_goal_event_older_than_the_run_is_history_not_a_goal(abandoned, env) -> None:
    workflow = abandoned()
    # an order dated before the run started, imported late
    old_order = make_event("order_completed", T0 - HOUR, received_at=T0 + HOUR / 2, cart_id="k1")
    decision = on_event([workflow], started(workflow, env), old_order, T0 + HOUR / 2, env)
    assert decision.runs == []


def test_a_goal_dated_between_the_trigger_and_its_processing_still_counts(abandoned, env) -> None:
    workflow = abandoned()
    # Given the cart event (dated T0) is only processed ten seconds later
    lagging = after(make_state(), on_event([workflow], make_state(), cart(), T0 + 10 * SECOND, env))
    # When the order, dated five seconds after the cart, is processed
    order = make_event("order_completed", T0 + 5 * SECOND, cart_id="k1")
    decision = on_event([workflow], lagging, order, T0 + 20 * SECOND, env)
    # Then it is a goal: it happened after the trigger, whatever the processing lag
    assert run_of(decision).outcome is Outcome.exited_goal


def test_a_goal_ends_queued_runs_too_without_starting_them(abandoned, env) -> None:
    workflow = abandoned(mode="queued")
    state = started(workflow, env)
    state = after(state, on_event([workflow], state, cart(at=T0 + HOUR / 4), T0 + HOUR / 4, env))
    assert [r.status for r in state.runs] == [RunStatus.waiting, RunStatus.queued]
    order = make_event("order_completed", T0 + HOUR / 2, cart_id="k1")
    decision = on_event([workflow], state, order, T0 + HOUR / 2, env)
    assert [(r.status, r.outcome) for r in decision.runs] == [
        (RunStatus.finished, Outcome.exited_goal),
        (RunStatus.finished, Outcome.exited_goal),
    ]
    assert TraceKind.run_started not in kinds(decision)


@pytest.mark.parametrize(
    ("mode", "order_at", "order_cart", "outcome", "first_kinds"),
    [
        # the order came first but is dated after the cart: the goal was already met
        ("restart", T0 + 10 * MINUTE, "k1", Outcome.exited_goal, [TraceKind.exited]),
        ("single", T0 + 10 * MINUTE, "k1", Outcome.exited_goal, [TraceKind.exited]),
        ("parallel", T0, "k1", Outcome.exited_goal, [TraceKind.exited]),  # same instant counts
        # an order for another cart, or one dated before the cart, reaches no goal of this run
        ("restart", T0 + 10 * MINUTE, "k2", None, [TraceKind.wait]),
        ("restart", T0 - 10 * MINUTE, "k1", None, [TraceKind.wait]),
    ],
)
def test_a_late_trigger_whose_goal_was_already_met_ends_at_once(
    abandoned, env, mode, order_at, order_cart, outcome, first_kinds
) -> None:
    workflow = abandoned(mode=mode)
    # Given Ann's order was applied first, but the cart it completes arrives only now
    order = make_event(
        "order_completed", order_at, received_at=T0 + 20 * MINUTE, cart_id=order_cart
    )
    state = make_state(applied_after=[order])
    # When the late cart_updated (dated T0) is applied
    decision = on_event([workflow], state, cart(), T0 + 20 * MINUTE, env)
    # Then the run ends by its goal before its first step, saying which event met it and why
    run = run_of(decision)
    assert run.outcome is outcome
    assert kinds(decision)[:2] == [TraceKind.trigger_matched, TraceKind.run_started]
    assert kinds(decision)[2:3] == first_kinds
    assert decision.messages == []
    if outcome is Outcome.exited_goal:
        assert (run.status, run.reason, run.due_at) == (RunStatus.finished, "bought", None)
        [exited] = messages_of(decision, TraceKind.exited)
        dated = order_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        assert exited == (
            f"run exited_goal: bought (exit goal met by order_completed ({order.id}) "
            f"dated {dated}, received before this trigger)"
        )


def test_a_late_trigger_queued_behind_a_run_is_exited_by_a_goal_already_met(abandoned, env):
    workflow = abandoned(mode="queued")
    state = started(workflow, env)  # a run for k1 waits since T0
    # The order for k1 (dated T0+30m) ended that run; a cart dated T0+20m arrives after it
    order = make_event("order_completed", T0 + 30 * MINUTE, cart_id="k1")
    state = after(state, on_event([workflow], state, order, T0 + 30 * MINUTE, env))
    assert state.runs == []
    # a second waiting run keeps the line busy, so the late cart is queued behind it
    other = after(
        state, on_event([workflow], state, cart(at=T0 + 31 * MINUTE), T0 + 31 * MINUTE, env)
    )
    late_state = ContactState(
        contact=other.contact,
        runs=other.runs,
        last_runs=other.last_runs,
        applied_after=[order],
    )
    decision = on_event([workflow], late_state, cart(at=T0 + 20 * MINUTE), T0 + 40 * MINUTE, env)
    [run] = [r for r in decision.runs if r.event["date"] == (T0 + 20 * MINUTE).isoformat()]
    assert (run.status, run.outcome) == (RunStatus.finished, Outcome.exited_goal)
    assert kinds(decision) == [TraceKind.trigger_matched, TraceKind.run_queued, TraceKind.exited]


# ---------------------------------------------------------------------------------- wait_for


CONFIRM = """
id: confirm
trigger: {event: signed_up}
steps:
  - wait_for:
      event: email_confirmed
      if: "event.properties.ok"
      timeout: 1d
  - wait_for: {event: email_confirmed, timeout: 1d, on_timeout: [{exit: once}]}
  - exit: twice
"""


@pytest.mark.parametrize(
    ("confirmations", "position", "reason"),
    [
        # awaited before the late trigger arrived, dated after it: the wait takes it at once
        ([(10, True)], "1", None),
        ([(10, True), (12, True)], "2", "twice"),  # one event each, in date order
        ([(-10, True)], "0", None),  # dated before the trigger: it happened before the wait
        ([(10, False)], "0", None),  # the wait's condition is false
    ],
)
def test_a_late_trigger_s_wait_for_takes_an_awaited_event_that_came_first(
    make_workflow, env, confirmations, position, reason
) -> None:
    workflow = make_workflow(CONFIRM)
    early = [
        make_event("email_confirmed", T0 + minutes * MINUTE, ok=ok) for minutes, ok in confirmations
    ]
    state = make_state(applied_after=early)
    signup = make_event("signed_up", T0)
    decision = on_event([workflow], state, signup, T0 + 20 * MINUTE, env)
    run = run_of(decision)
    assert (run.position, run.reason) == (position, reason)
    dated = (T0 + 10 * MINUTE).strftime("%Y-%m-%d %H:%M:%S UTC")
    resumed = messages_of(decision, TraceKind.resumed)
    if position == "0":
        assert (run.status, resumed) == (RunStatus.waiting, [])
    else:
        assert resumed[0] == (
            f"received email_confirmed ({early[0].id}) dated {dated}, received before this trigger"
        )
        assert len(resumed) == int(position)


def test_an_awaited_event_applied_earlier_does_not_count_for_a_wait_begun_by_a_timer(
    abandoned, env
) -> None:
    workflow = abandoned()
    state = started(workflow, env)
    viewed = make_event("cart_viewed", T0 + HOUR / 2, cart_id="k1")
    state = ContactState(
        contact=state.contact, runs=state.runs, last_runs=state.last_runs, applied_after=[viewed]
    )
    fired = on_timer(workflow, state.runs[0], state, T0 + HOUR, env)
    assert run_of(fired).waiting_for == ("cart_viewed",)


def test_wait_for_resumes_on_the_event_into_on_event_with_that_event(abandoned, env) -> None:
    workflow = abandoned()
    state, fired = at_wait_for(workflow, env)
    assert [m.subject for m in fired.messages] == ["Ann, your cart k1"]
    waiting = run_of(fired)
    assert (waiting.position, waiting.waiting_for) == ("2", ("cart_viewed",))
    # When Ann views the cart an hour later
    viewed = make_event("cart_viewed", T0 + 2 * HOUR, cart_id="k1")
    decision = on_event([workflow], state, viewed, T0 + 2 * HOUR, env)
    # Then the on_event branch runs with the viewed event, then the steps after the wait_for
    run = run_of(decision)
    assert [m.text for m in decision.messages] == ["Back at cart_viewed k1"]
    assert decision.messages[0].step == "2/on_event/0"
    assert run.event["name"] == "cart_viewed"
    assert (run.outcome, run.reason, run.position) == (Outcome.exited_step, "done", "3")
    assert kinds(decision) == [TraceKind.resumed, TraceKind.send, TraceKind.exited]


def test_wait_for_ignores_an_event_whose_condition_is_false(abandoned, env) -> None:
    workflow = abandoned()
    state, _ = at_wait_for(workflow, env)
    other = make_event("cart_viewed", T0 + 2 * HOUR, cart_id="k2")
    assert on_event([workflow], state, other, T0 + 2 * HOUR, env).is_empty


def test_wait_for_times_out_into_on_timeout(abandoned, env) -> None:
    workflow = abandoned()
    state, _ = at_wait_for(workflow, env)
    decision = on_timer(workflow, state.runs[0], state, T0 + HOUR + DAY, env)
    assert [m.text for m in decision.messages] == [
        "Cart k1 waits STOP https://shop.example/u/c1/sms"
    ]
    assert messages_of(decision, TraceKind.resumed) == ["timed out waiting for cart_viewed"]
    assert run_of(decision).reason == "done"


@pytest.mark.parametrize(
    ("occurred", "received", "resumes"),
    [
        (HOUR, HOUR, True),  # dated the instant the wait began
        (HOUR - timedelta(minutes=1), HOUR, True),  # dated before, received that same instant
        (HOUR - timedelta(minutes=1), HOUR + timedelta(seconds=1), False),  # before, and later
        (HOUR + timedelta(minutes=1), HOUR + 3 * HOUR, True),  # after, processed much later
    ],
)
def test_wait_for_counts_events_from_the_moment_the_wait_began(
    abandoned, env, occurred, received, resumes
) -> None:
    workflow = abandoned()
    state, _ = at_wait_for(workflow, env)  # the wait began at T0 + 1h
    viewed = make_event("cart_viewed", T0 + occurred, received_at=T0 + received, cart_id="k1")
    decision = on_event([workflow], state, viewed, T0 + received, env)
    assert bool(decision.messages) is resumes


# ---------------------------------------------------------------------------------- late timers


@pytest.mark.parametrize(
    ("late", "lateness", "sent", "late_trace"),
    [
        ("{policy: skip, limit: 2h}", timedelta(0), True, []),
        ("{policy: skip, limit: 2h}", timedelta(milliseconds=300), True, []),
        ("{policy: skip, limit: 2h}", HOUR, True, ["timer late by 1h: carrying on"]),
        (
            "{policy: skip, limit: 2h}",
            3 * HOUR,
            False,
            ["timer late by 3h (limit 2h): sends skipped"],
        ),
        (
            "{policy: skip}",
            90 * timedelta(minutes=1),
            False,
            ["timer late by 1h30m (limit 1h): sends skipped"],
        ),
        ("{policy: send, limit: 2h}", 3 * HOUR, True, ["timer late by 3h: carrying on"]),
    ],
)
def test_late_timers_follow_the_late_policy(
    abandoned, env, late, lateness, sent, late_trace
) -> None:
    workflow = abandoned(late=late)
    state = started(workflow, env)
    now = T0 + HOUR + lateness
    decision = on_timer(workflow, state.runs[0], state, now, env)
    assert bool(decision.messages) is sent
    assert messages_of(decision, TraceKind.late) == late_trace
    if not sent:
        assert messages_of(decision, TraceKind.skip) == [
            f"email 'cart' skipped: {late_trace[0].split(' (')[0].removeprefix('timer ')}"
        ]
    # either way the run carries on to the wait_for, armed from now
    assert run_of(decision).due_at == now + DAY


def test_a_late_skip_lasts_only_until_the_next_wait(abandoned, env) -> None:
    workflow = abandoned()
    state = started(workflow, env)
    late = on_timer(workflow, state.runs[0], state, T0 + 5 * HOUR, env)
    assert late.messages == []
    state = after(state, late)
    viewed = make_event("cart_viewed", T0 + 6 * HOUR, cart_id="k1")
    assert [m.text for m in on_event([workflow], state, viewed, T0 + 6 * HOUR, env).messages] == [
        "Back at cart_viewed k1"
    ]


# ---------------------------------------------------------------------------------- idempotence


def test_on_timer_twice_never_sends_twice(abandoned, env) -> None:
    workflow = abandoned()
    state = started(workflow, env)
    run = state.runs[0]
    first = on_timer(workflow, run, state, T0 + HOUR, env)
    assert len(first.messages) == 1
    # the timer delivered again, after the first was applied: nothing
    applied = after(state, first)
    assert on_timer(workflow, applied.runs[0], applied, T0 + HOUR, env) == Decision()
    # the first decision retried on the old state (its transaction rolled back): same keys
    retry = on_timer(workflow, run, state, T0 + HOUR, env)
    assert [m.key for m in retry.messages] == [m.key for m in first.messages]


def test_on_timer_before_due_or_after_the_end_does_nothing(abandoned, env) -> None:
    workflow = abandoned()
    state = started(workflow, env)
    run = state.runs[0]
    assert on_timer(workflow, run, state, T0 + HOUR - timedelta(seconds=1), env).is_empty
    finished = run.model_copy(update={"status": RunStatus.finished, "outcome": Outcome.finished})
    assert on_timer(workflow, finished, state, T0 + 2 * HOUR, env).is_empty


def test_a_run_passing_the_same_step_in_a_later_advance_gets_a_new_key(make_workflow, env) -> None:
    # `restart` runs for one key reuse no ids; two advances of one run reuse no keys
    workflow = make_workflow(
        """
        id: twice
        trigger: {event: go}
        steps:
          - send_sms: {text: "first"}
          - wait: 1h
          - send_sms: {text: "second"}
        """
    )
    start = on_event([workflow], make_state(), make_event("go"), T0, env)
    state = after(make_state(), start)
    fired = on_timer(workflow, state.runs[0], state, T0 + HOUR, env)
    run: Run = run_of(start)
    assert [m.key for m in (*start.messages, *fired.messages)] == [
        f"{run.id}:0:1",
        f"{run.id}:2:2",
    ]


def test_same_input_gives_an_identical_decision(abandoned, env) -> None:
    workflow = abandoned()
    state = started(workflow, env)
    event = cart(at=T0 + HOUR / 2)
    assert on_event([workflow], state, event, T0 + HOUR / 2, env) == on_event(
        [workflow], state, event, T0 + HOUR / 2, env
    )
    assert on_timer(workflow, state.runs[0], state, T0 + HOUR, env) == on_timer(
        workflow, state.runs[0], state, T0 + HOUR, env
    )


# ---------------------------------------------------------------------------------- versions


def test_runs_advance_on_their_own_version_and_triggers_use_the_first_listed(
    make_workflow, env
) -> None:
    text = """
        id: versioned
        trigger: {event: go}
        steps:
          - wait_for: {event: done, timeout: 1d, on_event: [{send_sms: {text: "%s"}}]}
        """
    v1, v2 = make_workflow(text % "from v1"), make_workflow(text % "from v2")
    assert v1.version != v2.version
    state = after(make_state(), on_event([v1], make_state(), make_event("go"), T0, env))
    done = make_event("done", T0 + HOUR)
    decision = on_event([v2, v1], state, done, T0 + HOUR, env)
    assert [m.text for m in decision.messages] == ["from v1"]
    restart = on_event([v2, v1], make_state(), make_event("go", T0 + HOUR), T0 + HOUR, env)
    assert run_of(restart).workflow_version == v2.version


# ---------------------------------------------------------------------------------- errors


def test_goal_and_wait_for_conditions_that_fail_are_traced_and_match_nothing(
    make_workflow, env
) -> None:
    workflow = make_workflow(
        """
        id: fragile
        trigger: {event: go}
        exit:
          - event: stop
            if: "event.properties.missing.deeper"
        steps:
          - wait_for: {event: stop, if: "event.properties.other.deeper", timeout: 1d}
        """
    )
    state = after(make_state(), on_event([workflow], make_state(), make_event("go"), T0, env))
    decision = on_event([workflow], state, make_event("stop", T0 + HOUR), T0 + HOUR, env)
    assert decision.runs == []
    errors = messages_of(decision, TraceKind.error)
    assert [e.split(":")[0] for e in errors] == ["exit goal", "wait_for"]
    assert "missing" in errors[0] and "other" in errors[1]


def test_a_key_that_cannot_be_rendered_starts_nothing(make_workflow, env) -> None:
    workflow = make_workflow(
        """
        id: keyed
        trigger: {event: go}
        key: "{{ event.properties.cart.id }}"
        steps:
          - exit: never
        """
    )
    decision = on_event([workflow], make_state(), make_event("go"), T0, env)
    assert decision.runs == []
    [error] = messages_of(decision, TraceKind.error)
    assert error.startswith("key:") and "cart" in error


def test_on_timer_refuses_a_run_of_another_workflow(abandoned, make_workflow, env) -> None:
    other = make_workflow("id: other\ntrigger: {event: go}\nsteps: [{exit: x}]\n")
    state = started(abandoned(), env)
    with pytest.raises(ValueError, match="belongs to abandoned"):
        on_timer(other, state.runs[0], state, T0 + HOUR, env)


# ---------------------------------------------------------------------------------- paths


def test_a_workflow_s_paths_walked_again_decide_the_same(abandoned, env) -> None:
    """Paths a workflow remembers from earlier decisions lead where they led the first time,
    and a position that names no step is refused the same every time."""
    workflow = abandoned()
    first = at_wait_for(workflow, env)[1]
    assert workflow.paths  # remembered from the first decision
    assert at_wait_for(workflow, env)[1] == first
    state = started(workflow, env)
    lost = state.runs[0].model_copy(update={"position": "7"})
    for _ in range(2):
        decision = on_timer(workflow, lost, state, T0 + HOUR, env)
        assert run_of(decision).outcome is Outcome.error
        assert run_of(decision).reason == "no step at '7'"
