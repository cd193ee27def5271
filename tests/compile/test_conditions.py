"""Conditions: compiled once, evaluated per event, history helpers detected and callable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.compile.conditions import HISTORY_FUNCTIONS, _environment, compile_condition
from tidings.errors import ConditionError, StoreError

NOW = datetime(2025, 3, 5, 18, 0, tzinfo=UTC)

# The contact's history as (event name, date): what the engine's helpers would look at.
HISTORY = [
    ("order_completed", NOW - timedelta(days=10)),
    ("cart_updated", NOW - timedelta(hours=3)),
    ("cart_updated", NOW - timedelta(hours=1)),
]


def history_helpers() -> dict[str, Callable[..., Any]]:
    """Tiny stand-ins for the engine's history helpers, over HISTORY."""

    def matching(name: str, since: datetime | None, within: timedelta | None) -> list[datetime]:
        start = since or (NOW - within if within else datetime.min.replace(tzinfo=UTC))
        return [date for event, date in HISTORY if event == name and date >= start]

    def has_event(
        name: str, since: datetime | None = None, within: timedelta | None = None
    ) -> bool:
        return bool(matching(name, since, within))

    def count_events(
        name: str, since: datetime | None = None, within: timedelta | None = None
    ) -> int:
        return len(matching(name, since, within))

    def last_event(name: str) -> dict[str, Any] | None:
        dates = matching(name, None, None)
        return {"name": name, "date": max(dates)} if dates else None

    return {"has_event": has_event, "count_events": count_events, "last_event": last_event}


def make_context(**overrides: Any) -> dict[str, Any]:
    """The evaluation context: render context plus history helpers; keywords replace entries."""
    properties = {"total": 14.5, "cart_id": "c-42", "items": [{"sku": "A"}], "vip": False}
    context: dict[str, Any] = {
        "contact": {"email": "ann@example.com", "COUNTRY": "FR", "timezone": "Europe/Paris"},
        "event": {"name": "cart_updated", "date": NOW, "properties": properties},
        "params": properties,
        "run": {"id": "r-1", "key": "c-42", "started_at": NOW - timedelta(hours=2)},
        "unsubscribe_url": None,
        "now": NOW,
        **history_helpers(),
    }
    context.update(overrides)
    return context


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.properties.total > 0", True),
        ("{{ event.properties.total > 0 }}", True),
        ("  {{event.properties.total > 100}}  ", False),
        ("event.properties.cart_id == run.key", True),
        ("params.total >= 14.5 and contact.COUNTRY in ['FR', 'BE']", True),
        ("event.properties.vip", False),
        ("not event.properties.vip", True),
        ("event.properties.items | length == 1", True),
        ("event.properties.items[0].sku == 'A'", True),
        ("event.properties.coupon is defined", False),
        ("event.properties.coupon | default('') == ''", True),
        ("'false'", True),  # Jinja truthiness: a non-empty string
        ("[]", False),
        ("none", False),
        ("event.date > run.started_at", True),
        ("contact.email.endswith('@example.com')", True),
        ("event.properties.total | int == 14", True),
        ("event.properties.total\n  > 10", True),
    ],
)
def test_conditions_evaluate_to_jinja_truthiness(source: str, expected: bool) -> None:
    condition = compile_condition(source)
    assert condition.evaluate(make_context()) is expected
    assert condition.uses_history is False


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("has_event('order_completed')", True),
        ("has_event('order_completed', since=run.started_at)", False),
        ("not has_event('order_completed', since=run.started_at)", True),
        ("count_events('cart_updated') == 2", True),
        ("count_events('cart_updated', since=run.started_at) == 1", True),
        ("last_event('order_completed').date < run.started_at", True),
        ("last_event('never_happened') is none", True),
        ("event.properties.total > 0 and count_events('cart_updated') > 1", True),
    ],
)
def test_history_helpers_are_callable_and_detected(source: str, expected: bool) -> None:
    condition = compile_condition(source)
    assert condition.uses_history is True
    assert condition.evaluate(make_context()) is expected


@pytest.mark.parametrize(
    "source",
    [
        'count_events("product_viewed", within="1d", where={"product_id": run.key}) >= 3',
        "has_event('cart_updated', since=run.started_at, where={'cart_id': params.cart_id})",
        "last_event('order_completed', where={}) is none",
    ],
)
def test_history_helpers_take_a_where_literal(source: str) -> None:
    assert compile_condition(source).uses_history is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('has_event("x", withn="1d")',
         "has_event: unknown argument 'withn' (did you mean 'within'? expected since, within, where)"),
        ('count_events("x", properties={"a": 1}) > 0',
         "count_events: unknown argument 'properties' (expected since, within, where)"),
        ('has_event("x", within="1q")',
         "has_event: within: expected a duration such as 90s, 15m, 1h30m, 2d, 1w or ISO 8601 PT1H,"
         " found '1q'"),
        ('has_event("x", since="yesterday")',
         "has_event: since: expected an ISO 8601 date-time, found 'yesterday'"),
        ('has_event("x", where=event.properties)',
         'has_event: where: expected a {...} of property names to values, e.g. where={"product_id": run.key}'),
        ('has_event("x", where={1: run.key})',
         'has_event: where: keys must be quoted property names, e.g. where={"product_id": run.key}'),
        ('not has_event("x", run.started_at)',
         "has_event: expected the event name alone before the keywords (since=, within=, where=),"
         " found 2 positional argument(s)"),
        ("last_event(42)", "last_event: the event name must be text, found 42"),
    ],
)  # fmt: skip
def test_history_calls_the_helpers_cannot_take_are_refused_at_compile_time(
    source: str, message: str
) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(source)
    assert str(caught.value) == f"{message} (in condition {source!r})"


def test_history_helpers_are_the_documented_three() -> None:
    assert HISTORY_FUNCTIONS == ("has_event", "count_events", "last_event")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "empty condition (in condition '')"),
        ("{{  }}", "empty condition (in condition '{{  }}')"),
        ("event.properties.total >", "syntax error: unexpected 'end of template' "
         "(in condition 'event.properties.total >')"),
        ("event.properties.total > 0 }}", "syntax error: unexpected '}}' after the "
         "expression (in condition 'event.properties.total > 0 }}')"),
        ("a b", "syntax error: unexpected 'b' after the expression (in condition 'a b')"),
        ("total > 0\nand (", "line 2: syntax error: unexpected 'end of template' "
         "(in condition 'total > 0\\nand (')"),
        ("evnt.properties.total > 0", "unknown variable 'evnt' (known: contact, event, params, "
         "run, unsubscribe_url, now, has_event, count_events, last_event) "
         "(in condition 'evnt.properties.total > 0')"),
    ],
)  # fmt: skip
def test_compile_errors_give_the_reason(source: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(source)
    assert str(caught.value) == message
    assert caught.value.expression == source


@pytest.mark.parametrize(
    ("source", "context", "message"),
    [
        ("event.properties.coupon == 'X'", make_context(),
         "undefined variable 'event.properties.coupon' (in condition \"event.properties.coupon == 'X'\")"),
        ("event.properties.coupon", make_context(),
         "undefined variable 'event.properties.coupon' (in condition 'event.properties.coupon')"),
        ("event.properties.total / 0 > 1", make_context(),
         "ZeroDivisionError: float division by zero (in condition 'event.properties.total / 0 > 1')"),
        ("event.properties.cart_id > 3", make_context(),
         "TypeError: '>' not supported between instances of 'str' and 'int' "
         "(in condition 'event.properties.cart_id > 3')"),
        ("has_event('x')", {k: v for k, v in make_context().items() if k != "has_event"},
         "undefined variable 'has_event' (in condition \"has_event('x')\")"),
        ("event.__class__", make_context(),
         "refused by the sandbox: access to attribute '__class__' of 'dict' object is unsafe. "
         "(in condition 'event.__class__')"),
    ],
)  # fmt: skip
def test_evaluation_errors_are_condition_errors(
    source: str, context: dict[str, Any], message: str
) -> None:
    condition = compile_condition(source)
    with pytest.raises(ConditionError) as caught:
        condition.evaluate(context)
    assert str(caught.value) == message


def test_value_gives_the_expression_itself() -> None:
    condition = compile_condition("event.properties.items | map(attribute='sku') | list")
    assert condition.value(make_context()) == ["A"]


def test_conditions_compare_by_source() -> None:
    assert compile_condition("event.properties.total > 0") == compile_condition(
        "event.properties.total > 0"
    )


def test_our_own_errors_from_a_helper_pass_through_unchanged() -> None:
    def has_event(name: str) -> bool:
        raise StoreError("the store is down")

    condition = compile_condition("has_event('x')")
    with pytest.raises(StoreError, match="the store is down"):
        condition.evaluate(make_context(has_event=has_event))


@pytest.mark.parametrize(
    "source",
    [
        "event.properties.total * 2",
        "range(3) | list",  # a global of the sandbox
        "namespace(n=1).n + 1",  # one of Jinja's own
        "cycler(1, 2).next()",
        "[params.total, contact.COUNTRY, now]",
        "event.properties.missing is undefined",
        "count_events('cart_updated', within=run.started_at - now)",
    ],
)
def test_a_condition_has_the_value_jinja_gives_the_same_expression(source: str) -> None:
    # Through the condition's own checks and context; Jinja's expression is the reference.
    reference = _environment().compile_expression(source, undefined_to_none=False)
    assert compile_condition(source).value(make_context()) == reference(make_context())


def test_a_context_name_hides_a_global_of_the_same_name() -> None:
    condition = compile_condition("range(2) | list")
    assert condition.value(make_context()) == [0, 1]
    assert condition.value(make_context(range=lambda n: ["mine"] * n)) == ["mine", "mine"]


def test_an_evaluation_leaves_nothing_behind_for_the_next() -> None:
    condition = compile_condition("event.properties.total > 10")
    assert condition.evaluate(make_context()) is True
    low = make_context(event={"properties": {"total": 1}})
    assert condition.evaluate(low) is False
    assert condition.evaluate(make_context()) is True
