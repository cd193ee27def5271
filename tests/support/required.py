"""What a test needs from the machine: missing, the test skips locally and fails under CI.

CI (`CI` set, as `.ci/run` runs with) must never pass green with whole parts untested, because
`scripts/test` installs everything the tests need there.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing(reason: str) -> NoReturn:
    """Skip the test for lack of `reason`; fail it instead when `CI` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required when CI is set)", pytrace=False)
    pytest.skip(reason)


def program(name: str, package: str) -> str:
    """The path of an executable the test runs, or `missing` naming the package to install."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} not found: install the {package!r} package (bash scripts/ensure-system)")
    return path
