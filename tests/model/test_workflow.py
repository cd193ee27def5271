"""The workflow model's own rules: duration syntax, times of day, one kind of wait."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from pydantic import ValidationError

from tidings.model.durations import format_duration, parse_duration
from tidings.model.workflow import InFlight, WaitSpec, WaitStep, Workflow


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("PT1H", timedelta(hours=1)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("-24h", timedelta(hours=-24)),
        (30, timedelta(seconds=30)),
    ],
)
def test_durations_read_as_authors_write_them(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3x", "h", "P", "1h 2", "PT", True])
def test_bad_durations_say_what_was_expected(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration such as 90s"):
        parse_duration(text)  # type: ignore[arg-type]


def test_a_duration_text_read_again_gives_the_same_and_a_bad_one_fails_every_time() -> None:
    # Texts are remembered once parsed (conditions ask for the same few per event).
    assert [parse_duration(" 2d ") for _ in range(3)] == [timedelta(days=2)] * 3
    assert parse_duration("-2d") == timedelta(days=-2)
    for _ in range(2):
        with pytest.raises(ValueError, match="found '2x'"):
            parse_duration("2x")


def test_a_duration_that_is_not_text_fails_as_before() -> None:
    with pytest.raises(AttributeError):
        parse_duration(None)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        parse_duration(["1d"])  # type: ignore[arg-type]


def test_durations_format_back_compactly() -> None:
    assert [format_duration(parse_duration(t)) for t in ("1h30m", "-24h", "0s", "P1W")] == [
        "1h30m",
        "-1d",
        "0s",
        "1w",
    ]


@pytest.mark.parametrize("text", ["9:00", "09:00", "09:00:00"])
def test_a_time_of_day_may_omit_its_leading_zero(text: str) -> None:
    assert WaitStep.model_validate({"wait": {"until": text}}).wait.until == time(9, 0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"for": "0s"}, "expected a positive duration"),
        (
            {"for": "1h", "until": "09:00"},
            "exactly one of 'for', 'until' or 'date', found for, until",
        ),
        ({"weekdays": ["mon"]}, "found none"),
        ({"for": "1h", "offset": "1h"}, "'offset' applies to 'date' only"),
    ],
)
def test_a_wait_is_exactly_one_kind(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WaitSpec.model_validate(spec)


def test_midnight_is_a_time_of_day_not_a_missing_one() -> None:
    assert WaitStep.model_validate({"wait": {"until": "00:00"}}).wait.until == time(0, 0)


MINIMAL = {"id": "cart", "trigger": {"event": "cart_updated"}, "steps": [{"wait": "1h"}]}


def test_runs_in_flight_keep_their_version_unless_the_workflow_says_otherwise() -> None:
    assert Workflow.model_validate(MINIMAL).in_flight is InFlight.keep
    cancel = Workflow.model_validate({**MINIMAL, "in_flight": "cancel"})
    assert cancel.in_flight is InFlight.cancel
    upgrade = Workflow.model_validate({**MINIMAL, "in_flight": "upgrade"})
    assert upgrade.in_flight is InFlight.upgrade
    with pytest.raises(ValidationError, match="'keep', 'cancel' or 'upgrade'"):
        Workflow.model_validate({**MINIMAL, "in_flight": "migrate"})
