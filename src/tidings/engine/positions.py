"""Step paths: where a run is in a workflow's tree of steps.

A path names one step by its index in the top-level list and, inside branching steps, by the
branch and the index in it: `"0"`, `"2/then/0"`, `"3/on_timeout/1"`. Branches are `then` and
`else` (an `if` step) and `on_event` and `on_timeout` (a `wait_for` step).

A path may point one past the end of a list (e.g. after the last step of a branch);
`resolve` walks up such a path to the step that follows the branching step, or to the end of
the workflow (None). This keeps "what comes next" a pure function of the tree and the path, so a
run stored mid-way continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from tidings.model.workflow import IfStep, StepModel, WaitForStep

BRANCHES = ("then", "else", "on_event", "on_timeout")

PATH_CACHE = 4096
"""Paths parsed and joined, remembered: a few per workflow step, bounded all the same."""


class PositionError(ValueError):
    """A path that does not name a step of this workflow (e.g. written by another version)."""


@lru_cache(maxsize=PATH_CACHE)
def _parse(path: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Split a path into its step indexes and the branch names between them.

    Remembered (a malformed path is not: it raises every time), since each step of every
    decision parses its path several times.
    """
    parts = path.split("/")
    if len(parts) % 2 != 1:
        raise PositionError(f"malformed step path {path!r}")
    try:
        indexes = tuple(int(p) for p in parts[0::2])
    except ValueError as exc:
        raise PositionError(f"malformed step path {path!r}") from exc
    branches = tuple(parts[1::2])
    if any(i < 0 for i in indexes) or any(b not in BRANCHES for b in branches):
        raise PositionError(f"malformed step path {path!r}")
    return indexes, branches


def branch_steps(step: StepModel, branch: str) -> Sequence[StepModel]:
    """The steps of one branch of a branching step; PositionError when it has no such branch."""
    if isinstance(step, IfStep) and branch in ("then", "else"):
        return step.then if branch == "then" else step.else_
    if isinstance(step, WaitForStep) and branch in ("on_event", "on_timeout"):
        return step.wait_for.on_event if branch == "on_event" else step.wait_for.on_timeout
    raise PositionError(f"a {type(step).__name__} step has no branch {branch!r}")


def _list_at(
    steps: Sequence[StepModel], indexes: tuple[int, ...], branches: tuple[str, ...]
) -> Sequence[StepModel]:
    """The list of steps that the last index of a path indexes into."""
    current = steps
    for index, branch in zip(indexes, branches, strict=False):
        if index >= len(current):
            raise PositionError("path goes through a step that does not exist")
        current = branch_steps(current[index], branch)
    return current


def step_at(steps: Sequence[StepModel], path: str) -> StepModel:
    """The step a path names; PositionError when there is none."""
    indexes, branches = _parse(path)
    current = _list_at(steps, indexes, branches)
    if indexes[-1] >= len(current):
        raise PositionError(f"no step at {path!r}")
    return current[indexes[-1]]


def resolve(steps: Sequence[StepModel], path: str) -> str | None:
    """The path of the step to execute for `path`, walking up out of finished branches.

    None means the run walked off the end of the workflow.
    """
    indexes, branches = _parse(path)
    while True:
        current = _list_at(steps, indexes, branches)
        if indexes[-1] < len(current):
            return _join(indexes, branches)
        if not branches:
            return None
        # The branch is done: continue after the step that owns it.
        indexes = (*indexes[:-2], indexes[-2] + 1)
        branches = branches[:-1]


@lru_cache(maxsize=PATH_CACHE)
def next_path(path: str) -> str:
    """The path just after `path` in the same list (it may be past the end; see `resolve`)."""
    indexes, branches = _parse(path)
    return _join((*indexes[:-1], indexes[-1] + 1), branches)


def branch_path(path: str, branch: str) -> str:
    """The path of the first step of a branch of the step at `path`."""
    if branch not in BRANCHES:
        raise PositionError(f"unknown branch {branch!r}")
    return f"{path}/{branch}/0"


@lru_cache(maxsize=PATH_CACHE)
def _join(indexes: tuple[int, ...], branches: tuple[str, ...]) -> str:
    parts = [str(indexes[0])]
    for branch, index in zip(branches, indexes[1:], strict=True):
        parts += [branch, str(index)]
    return "/".join(parts)
