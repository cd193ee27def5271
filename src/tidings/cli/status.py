"""`tidings status`: runs per workflow, status and step, with when the next one is due.

One row per (workflow, status, step) with its count and, for waiting runs, the earliest due
time; then one line per workflow with its totals. Finished runs are counted per workflow
without their step, so the table stays about what is in flight.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, JustifyMethod
from rich.table import Table

from tidings.bootstrap.components import open_store, pick_clock
from tidings.errors import ConfigError, StoreError
from tidings.model.runs import RunStatus
from tidings.ports import RunCount
from tidings.settings import load_settings


def status(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Settings file (default: ./tidings.toml if present)."),
    ] = None,
) -> None:
    """Show runs per workflow and step: how many wait, where, and when the next is due."""
    try:
        settings = load_settings(config, os.environ)
        store = open_store(settings)
        clock = pick_clock(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        with store.transaction() as uow:
            counts = uow.run_counts()
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
    console = Console(soft_wrap=True, highlight=False)
    if not counts:
        console.print("No runs yet.")
        return
    console.print(status_table(counts, clock.now()))


def status_table(counts: list[RunCount], now: datetime) -> Table:
    """The table `status` prints."""
    table = Table(title="Runs", title_justify="left")
    columns: list[tuple[str, JustifyMethod]] = [
        ("Workflow", "left"),
        ("Status", "left"),
        ("Step", "left"),
        ("Runs", "right"),
        ("Next due", "left"),
    ]
    for column, justify in columns:
        table.add_column(column, justify=justify)
    finished: dict[str, int] = {}
    for count in counts:
        if count.status == RunStatus.finished.value:
            finished[count.workflow_id] = finished.get(count.workflow_id, 0) + count.count
    workflows = sorted({c.workflow_id for c in counts})
    for workflow in workflows:
        rows = [
            c for c in counts if c.workflow_id == workflow and c.status != RunStatus.finished.value
        ]
        for count in sorted(rows, key=lambda c: (c.status, _step_order(c.position))):
            table.add_row(
                workflow,
                count.status,
                count.position,
                str(count.count),
                _due(count.next_due_at, now) if count.status == RunStatus.waiting.value else "",
            )
        if workflow in finished:
            table.add_row(workflow, "finished", "", str(finished[workflow]), "")
        total = sum(c.count for c in counts if c.workflow_id == workflow)
        active = total - finished.get(workflow, 0)
        table.add_row(
            f"[bold]{workflow}[/bold]",
            "[bold]total[/bold]",
            "",
            f"[bold]{total}[/bold]",
            f"{active} in flight",
            end_section=True,
        )
    return table


def _step_order(position: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (0, p) for p in position.split("/")]


def _due(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    text = when.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    delta = when - now
    if delta <= timedelta(0):
        return f"{text} (due now)"
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return f"{text} (in {' '.join(parts[:2]) or '<1m'})"
