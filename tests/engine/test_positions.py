"""Step paths name steps in the tree, and `resolve` walks out of finished branches."""

from __future__ import annotations

import pytest
import yaml

from tidings.engine.positions import (
    PositionError,
    branch_path,
    next_path,
    resolve,
    step_at,
)
from tidings.model.workflow import (
    ExitStep,
    IfStep,
    SendEmailStep,
    SendSmsStep,
    WaitForStep,
    WaitStep,
    Workflow,
)

STEPS = Workflow.model_validate(
    yaml.safe_load(
        """
id: tree
trigger: {event: go}
steps:
  - wait: 1h                              # 0
  - if: "true"                            # 1
    then:
      - send_email: {template: a}         # 1/then/0
    else:
      - exit: nope                        # 1/else/0
  - wait_for:                             # 2
      event: done
      timeout: 1d
      on_timeout:
        - send_sms: {text: hi}            # 2/on_timeout/0
        - if: "false"                     # 2/on_timeout/1
          then:
            - send_email: {template: b}   # 2/on_timeout/1/then/0
  - send_email: {template: c}             # 3
"""
    )
).steps


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("0", WaitStep),
        ("1", IfStep),
        ("1/then/0", SendEmailStep),
        ("1/else/0", ExitStep),
        ("2", WaitForStep),
        ("2/on_timeout/0", SendSmsStep),
        ("2/on_timeout/1/then/0", SendEmailStep),
        ("3", SendEmailStep),
    ],
)
def test_step_at_finds_the_step_a_path_names(path: str, kind: type) -> None:
    assert isinstance(step_at(STEPS, path), kind)


@pytest.mark.parametrize(
    ("path", "resolved"),
    [
        ("0", "0"),  # a step that exists is itself
        ("1/then/1", "2"),  # after the last step of `then`: the step after the `if`
        ("1/else/1", "2"),
        ("2/on_event/0", "3"),  # an empty branch: straight after the `wait_for`
        ("2/on_timeout/1/then/1", "3"),  # two levels up at once
        ("2/on_timeout/1/else/0", "3"),
        ("4", None),  # past the last top-level step: the end
    ],
)
def test_resolve_walks_up_out_of_finished_branches(path: str, resolved: str | None) -> None:
    assert resolve(STEPS, path) == resolved


@pytest.mark.parametrize(
    "path", ["", "x", "1/then", "1/sideways/0", "-1", "0/then/0", "9/then/0", "5"]
)
def test_paths_that_name_no_step_are_refused(path: str) -> None:
    with pytest.raises(PositionError):
        step_at(STEPS, path)


def test_next_and_branch_paths_are_built_from_the_current_path() -> None:
    assert next_path("2/on_timeout/0") == "2/on_timeout/1"
    assert branch_path("2/on_timeout/1", "then") == "2/on_timeout/1/then/0"
    with pytest.raises(PositionError):
        branch_path("1", "maybe")


def test_one_path_resolves_by_the_tree_it_is_read_in() -> None:
    # Paths are parsed once and remembered; what they resolve to is still each tree's own.
    short = Workflow.model_validate(
        {
            "id": "short",
            "trigger": {"event": "go"},
            "steps": [{"wait": "1h"}, {"if": "true", "then": [{"exit": "done"}]}],
        }
    ).steps
    assert resolve(STEPS, "1/then/1") == "2"
    assert resolve(short, "1/then/1") is None
    assert isinstance(step_at(STEPS, "2"), WaitForStep)
    with pytest.raises(PositionError):
        step_at(short, "2")


def test_a_malformed_path_is_refused_every_time_and_a_written_one_read_as_written() -> None:
    for _ in range(2):
        with pytest.raises(PositionError, match="malformed step path '1/then'"):
            resolve(STEPS, "1/then")
    assert resolve(STEPS, "01") == "1"  # indexes are numbers: the path is given back canonical
    assert next_path("1/then/0") == "1/then/1"
    assert next_path("1/then/0") == "1/then/1"
