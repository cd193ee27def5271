"""The benchmarks run, at a tiny size, and report what their figures stand on: every email
received once, nothing lost, nothing sent after an acknowledged order.

Figures are never asserted (the machine's speed is no test's business); what a benchmark
checks of its own run is, since a benchmark whose correctness lines lie would make its
figures worthless. Each runs as a user runs it, `python -m bench.NAME` from the repository.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.required import missing, program

ROOT = Path(__file__).resolve().parents[2]
REES46 = ROOT.parent / "shared" / "data" / "rees46_multicategory_2019-10-01_head.csv"


def bench(name: str, *args: str) -> str:
    """Run one benchmark to its end; its output, which must say what it measured."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^machine: \d+ cores", done.stdout, re.M), done.stdout
    assert re.search(rf"^command: \S+ -m bench\.{name}\b", done.stdout, re.M), done.stdout
    return done.stdout


def row(output: str, label: str) -> list[str]:
    """The cells of the summary table's row that starts with `label` (cells are 2+ spaces apart)."""
    for line in output.splitlines():
        if line.startswith(label):
            return re.split(r"\s{2,}", line.strip())
    raise AssertionError(f"no row {label!r} in:\n{output}")


def test_delivery_reports_every_email_received_exactly_once() -> None:
    output = bench("delivery", "--messages", "40", "--runs", "1")
    settings = [
        re.split(r"\s{2,}", line.strip())
        for line in output.splitlines()
        if re.match(r"\d+\s{2,}\d+\s{2,}", line)
    ]
    assert [cells[:2] for cells in settings] == [["1", "1"], ["4", "8"], ["8", "8"]], output
    for cells in settings:
        assert cells[-2:] == ["40 of 40", "0"], cells  # received of sent, duplicates
    assert "SMTP server CPU us/email" in output


def test_end_to_end_reports_no_email_missing_duplicated_or_after_an_order() -> None:
    output = bench("e2e", "--contacts", "40", "--runs", "1")
    expected, received = re.findall(r"[\d,]+", row(output, "emails expected / received")[1])
    assert expected == received == "36"  # one contact in ten orders before the wait ends
    assert row(output, "missing (total)")[1] == "0"
    assert row(output, "duplicates (total)")[1] == "0"
    assert row(output, "emails after an acknowledged order (total)")[1] == "0"


def test_timers_process_every_due_run_and_report_the_daemons_start() -> None:
    output = bench("timers", "--waiting", "400", "--due", "60", "--runs", "1")
    assert row(output, "runs waiting")[1] == "400"
    assert re.fullmatch(r"[\d,]+ \(min .*\)", row(output, "steps/s, 60 due at once")[1])
    assert re.fullmatch(r"[\d.]+ \(min .*\)", row(output, "start-to-ready, s")[1])


def test_the_replay_reports_its_events_beside_the_raw_insert_limit() -> None:
    if not REES46.exists():
        missing(f"{REES46} is not there (shared/ beside the repository)")
    output = bench("engine", "--runs", "1")
    replayed = re.search(r"replay [\d.]+ s: [\d,]+ events/s \(([\d,]+) events", output)
    assert replayed is not None and int(replayed[1].replace(",", "")) > 17_000, output
    assert re.fullmatch(r"[\d,]+ \(min .*\)", row(output, "raw sqlite3 batched inserts")[1])


@pytest.mark.parametrize("server", ["daemon", "floor", "floor-http"])
def test_ingestion_loses_no_acknowledged_event(server: str) -> None:
    program("wrk", "wrk")
    output = bench("ingest", "--server", server, "--runs", "1", "--seconds", "1")
    for mode in ("single POST /v3/events", "batch POST /v3/events/batch"):
        cells = row(output, mode)
        assert cells[-2:] == ["0", "0"], cells  # lost, errors
