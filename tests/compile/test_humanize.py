"""Pydantic errors told in the author's words: path as written, expected and found, did-you-mean."""

from __future__ import annotations

import pytest

from tidings.compile.humanize import data_path, describe, did_you_mean, keys_at
from tidings.compile.loader import load_workflow_text
from tidings.compile.templates import TemplateCatalog

HEAD = "id: cart\ntrigger: {event: cart_updated}\n"


def problems(body: str) -> list[str]:
    result = load_workflow_text(HEAD + body, "cart.yaml", TemplateCatalog.empty())
    return [str(p) for p in result.problems]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("max: 0\nsteps: [{wait: 1h}]\n", "cart.yaml:3:6: max: expected a number >= 1, found 0"),
        (
            "reentry: {cooldown: 5 years}\nsteps: [{wait: 1h}]\n",
            "cart.yaml:3:21: reentry.cooldown: expected a duration such as 90s, 15m, 1h30m, 2d, "
            "1w or ISO 8601 PT1H, found '5 years'",
        ),
        (
            "exit: [{event: order_completed, if: ['']}]\nsteps: [{wait: 1h}]\n",
            "cart.yaml:3:38: exit[0].if[0]: expected a non-empty string, found ''",
        ),
        (
            "steps:\n  - wait: {for: 1h, until: '09:00'}\n",
            "cart.yaml:4:11: steps[0].wait: expected exactly one of 'for', 'until' or 'date', "
            "found for, until",
        ),
        (
            "steps:\n  - send_sms: {}\n",
            "cart.yaml:4:15: steps[0].send_sms: expected exactly one of 'template' or 'text'",
        ),
        (
            "steps:\n  - wait_for: {event: a, timeout: 1d, on_timeout: {exit: x}}\n",
            "cart.yaml:4:51: steps[0].wait_for.on_timeout: expected a list, found a mapping "
            "{'exit': 'x'}",
        ),
        (
            "steps:\n  - update_contact: {}\n",
            "cart.yaml:4:21: steps[0].update_contact: expected at least 1 item, found an empty mapping",
        ),
        (
            "steps:\n  - send_sms: {text: x, transactional: maybe}\n",
            "cart.yaml:4:40: steps[0].send_sms.transactional: expected true or false, found 'maybe'",
        ),
        (
            "steps:\n  - exit: null\n",
            "cart.yaml:4:11: steps[0].exit: expected a string, found null",
        ),
        (
            "steps:\n  - wait: 1h\n    bogus: 1\n",
            "cart.yaml:5:5: steps[0].bogus: unknown key 'bogus'; expected one of: wait",
        ),
    ],
)
def test_schema_errors_read_as_expected_and_found(body, expected):
    assert problems(body) == [expected]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (540, "540"),
        ("x" * 50, repr("x" * 37 + "...")),
        ([], "an empty list"),
        ({}, "an empty mapping"),
        ([1, 2], "a list [1, 2]"),
        ({"k": "v" * 60}, "a mapping {'k': '" + "v" * 29 + "...}"),  # 40 characters of repr
    ],
)
def test_found_values_are_short(value, text):
    assert describe(value) == text


def test_the_repeated_step_tag_and_union_members_leave_the_path():
    data = {"steps": [{"send_email": {"template": "x"}}, {"update_contact": {"A": [1]}}]}

    assert data_path(("steps", 0, "send_email", "send_email", "template"), data) == (
        "steps",
        0,
        "send_email",
        "template",
    )
    assert data_path(("steps", 1, "update_contact", "update_contact", "A", "str"), data) == (
        "steps",
        1,
        "update_contact",
        "A",
    )
    assert data_path(("steps", 0, "send_email", "send_email", "to"), data, missing=True) == (
        "steps",
        0,
        "send_email",
        "to",
    )


def test_known_keys_follow_the_model_to_the_place():
    data = {"steps": [{"wait_for": {"on_event": [{"if": "x", "then": []}]}}]}

    assert "quiet_hours" in keys_at((), data)
    assert keys_at(("steps", 0, "wait_for"), data) == [
        "event",
        "if",
        "timeout",
        "on_event",
        "on_timeout",
    ]
    assert keys_at(("steps", 0, "wait_for", "on_event", 0), data) == ["if", "then", "else"]
    assert keys_at(("nowhere",), data) == []


def test_did_you_mean_only_when_close():
    assert did_you_mean("wiat", ["wait", "wait_for"]) == "wait"
    assert did_you_mean("xyz", ["wait", "wait_for"]) is None
