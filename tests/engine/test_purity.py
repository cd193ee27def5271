"""The engine core never reads the clock and never draws random numbers: time and ids come in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tidings.engine

ENGINE = Path(tidings.engine.__file__).parent
MODULES = sorted(ENGINE.glob("*.py"))

FORBIDDEN_MODULES = {"random", "secrets", "uuid", "time", "os", "io", "pathlib", "socket"}
FORBIDDEN_CALLS = {
    "now",
    "utcnow",
    "today",
    "monotonic",
    "perf_counter",
    "time_ns",
    "uuid1",
    "uuid4",
}


def impurities(source: str) -> list[str]:
    """Imports of clock/randomness/I-O modules and calls that read the clock or make ids."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            # `time()` alone is datetime.time; the `time` module itself is a forbidden import
            clock = ast.unparse(func) == "time.time"
            if name in FORBIDDEN_CALLS or clock:
                found.append(f"call {ast.unparse(func)}()")
        elif isinstance(node, ast.Name) and node.id in {"open", "print", "input"}:
            found.append(node.id)
    return found


def test_the_scan_catches_what_it_looks_for() -> None:
    sample = (
        "import random\nfrom uuid import uuid4\nimport time\n"
        "from datetime import datetime, date\n"
        "a = datetime.now()\nb = date.today()\nc = uuid4()\nd = time.time()\ne = open('x')\n"
    )
    assert impurities(sample) == [
        "import random",
        "from uuid import ...",
        "import time",
        "call datetime.now()",
        "call date.today()",
        "call uuid4()",
        "call time.time()",
        "open",
    ]


def test_the_engine_has_modules_to_scan() -> None:
    assert {p.name for p in MODULES} >= {"core.py", "runner.py", "timing.py", "triggers.py"}


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_no_engine_module_reads_the_clock_draws_randomness_or_does_io(module: Path) -> None:
    assert impurities(module.read_text(encoding="utf-8")) == []
