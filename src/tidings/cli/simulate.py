"""`tidings simulate`: what would the workflows have done with this event log?

Replays a JSONL file (the `/v3/events` shape) or a CSV file (with `--mapping`) through the real
engine and store in virtual time, delivering nothing (messages are files in `--outbox`), and
prints per workflow: runs started and how they ended, runs still waiting, messages per step,
skips by reason and the first rendered messages; then refused and skipped rows. `--report FILE`
writes the same as JSON (deterministic: the same input gives the same bytes) and a chart
(self-contained HTML) next to it; `--contact ID` adds that contact's timeline.

A progress bar with events/s is drawn on stderr when it is a terminal; the speed of the whole
replay is printed on stderr at the end (never in the report: it is wall-clock time).

Exit status: 0 when every row was replayed and every workflow loaded; 1 when a row was
refused or a workflow did not load (all the rest is still replayed and reported); 2 for a usage
error (a missing file, a bad mapping or time).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from tidings.bootstrap import simulation
from tidings.cli.validate import problem_text
from tidings.errors import ConfigError
from tidings.service.chart import render_chart
from tidings.service.simulation_report import SimulationReport, WorkflowFigures
from tidings.settings import load_settings

OUTCOME_WORDS = {
    "exited_goal": "exited by goal",
    "exited_step": "exited by step",
    "finished": "finished",
    "restarted": "restarted",
    "error": "ended in error",
    "cancelled": "cancelled",
    "condition_false": "condition false",
}


class RateColumn(ProgressColumn):
    """Events per second, as Rich measures the task's speed."""

    def render(self, task: Task) -> Text:
        """The rate, or a dash before there is one."""
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} events/s" if speed else "- events/s", style="cyan")


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or date-time; naive values are UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO 8601 date or date-time, found {value!r}", param_hint=option
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def simulate(
    *,
    events: Annotated[
        Path,
        typer.Option(
            "--events", help="Event log: JSONL (/v3/events shape) or CSV.", dir_okay=False
        ),
    ],
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="Column mapping for a CSV file.", dir_okay=False),
    ] = None,
    workflows: Annotated[
        Path | None,
        typer.Option("--workflows", help="Workflows folder (default: workflows).", file_okay=False),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option("--templates", help="Templates folder (default: templates).", file_okay=False),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="Replay from this time; earlier events are history only."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Stop virtual time here; later events are left out."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the report as JSON.", dir_okay=False)
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", help="Write the chart here (default: the report's .html)."),
    ] = None,
    contact: Annotated[
        str | None, typer.Option("--contact", help="Print this contact's timeline (id or ext_id).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", help="Database URL to replay into (default: a temporary one)."),
    ] = None,
    outbox: Annotated[
        Path | None,
        typer.Option(
            "--outbox",
            help="Folder the messages are written to (default: OUTBOX_DIR/simulate).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", help="Rendered messages shown per workflow.", min=0)
    ] = 3,
) -> None:
    """Replay an event log through the workflows in virtual time and report what they did."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not events.is_file():
        raise typer.BadParameter(f"no such file: {events}", param_hint="--events")
    request = simulation.SimulationRequest(
        events=events,
        mapping=mapping,
        workflows_dir=workflows or settings.workflows_dir,
        templates_dir=templates or settings.templates_dir,
        outbox_dir=outbox or settings.outbox_dir / "simulate",
        start=parse_time(start, "--from"),
        until=parse_time(until, "--until"),
        database_url=database,
        contact=contact,
        samples=samples,
    )
    errors = Console(stderr=True, soft_wrap=True, highlight=False)
    console = Console(soft_wrap=True, highlight=False)
    try:
        with errors.status(f"reading {events}", spinner="dots"):
            read = simulation.read_file(request)
        progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            console=errors,
            disable=not errors.is_terminal,
        )
        began = time.perf_counter()
        with progress:
            task = progress.add_task("replaying", total=len(read))
            result = simulation.simulate(
                request, settings, read, progress=lambda n: progress.advance(task, n)
            )
        seconds = time.perf_counter() - began
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    for problem in result.problems:
        errors.print(problem_text(problem))
    print_report(result.report, console)
    if contact is not None:
        print_timeline(result.report, contact, console)
    rate = result.report.totals.replayed / seconds if seconds > 0 else 0.0
    errors.print(
        f"replayed {result.report.totals.replayed} events in {seconds:.1f} s "
        f"({rate:,.0f} events/s); {result.outbox_files} message files in {request.outbox_dir}/"
    )
    _write_outputs(result.report, report, chart, errors)
    if result.problems or result.report.totals.refused:
        raise typer.Exit(1)


def _write_outputs(
    report: SimulationReport, report_path: Path | None, chart: Path | None, errors: Console
) -> None:
    chart_path = chart or (report_path.with_suffix(".html") if report_path else None)
    try:
        if report_path is not None:
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(report.to_json(), encoding="utf-8")
            errors.print(f"report: {report_path}")
        if chart_path is not None:
            chart_path.parent.mkdir(parents=True, exist_ok=True)
            chart_path.write_text(render_chart(report), encoding="utf-8")
            errors.print(f"chart: {chart_path}")
    except OSError as exc:
        raise typer.BadParameter(f"cannot write: {exc}") from exc


def print_report(report: SimulationReport, console: Console) -> None:
    """The report as text: totals, each workflow, then refused and skipped rows."""
    t = report.totals
    console.print(Text(f"Simulation of {report.source}", style="bold"))
    merged = t.rows - t.events - t.refused - t.skipped
    console.print(
        f"  rows {t.rows} · events {t.events} · refused {t.refused} · skipped {t.skipped}"
        + (f" · {merged} rows merged into other events" if merged > 0 else "")
        + (f" · duplicates {t.duplicates}" if t.duplicates else "")
    )
    console.print(
        f"  events from {t.first_event or '-'} to {t.last_event or '-'};"
        f" virtual time ran until {t.end or '-'}"
    )
    extra = f" · history only {t.history}" if t.history else ""
    extra += f" · after --until {t.after_until}" if t.after_until else ""
    console.print(
        f"  replayed {t.replayed}{extra} · timers fired {t.timers} · messages {t.messages}"
    )
    for workflow in report.workflows:
        console.print()
        _workflow(workflow, console)
    if report.refused:
        console.print()
        console.print(Text(f"Refused rows ({t.refused}; first {len(report.refused)})", style="red"))
        for problem in report.refused:
            console.print(f"  line {problem.line}: {problem.reason}")
    if report.skipped:
        console.print()
        console.print(Text(f"Skipped rows ({t.skipped})", style="yellow"))
        for reason, count in report.skipped.items():
            console.print(f"  {count:>6}  {reason}")


def _workflow(figures: WorkflowFigures, console: Console) -> None:
    title = Text(figures.id, style="bold")
    if figures.name:
        title.append(f" · {figures.name}")
    console.print(title)
    ends = " · ".join(
        f"{OUTCOME_WORDS.get(outcome, outcome)} {count}"
        for outcome, count in figures.outcomes.items()
    )
    console.print(
        f"  runs started {figures.runs_started}"
        + (f" · {ends}" if ends else "")
        + f" · still waiting {figures.waiting}"
        + (f" · queued {figures.queued}" if figures.queued else "")
    )
    after = figures.messages_after_last_event
    console.print(
        f"  messages {figures.messages}"
        + (f" ({after} after the last event of the file)" if after else "")
    )
    for step in figures.steps:
        deferred = f" ({step.deferred} deferred by quiet hours)" if step.deferred else ""
        console.print(
            f"    step {step.step} {step.action} {step.template}: {step.messages}{deferred}"
        )
    for title_text, counts in (("skipped", figures.skips), ("errors", figures.errors)):
        if counts:
            console.print(f"  {title_text}:")
            for reason, count in counts.items():
                console.print(f"    {count:>6}  {reason}")
    for sample in figures.samples:
        head = Text(f"  ✉ {sample.at} step {sample.step} → {sample.to}", style="cyan")
        console.print(head)
        if sample.subject:
            console.print(f"      subject: {sample.subject}")
        for line in sample.lines:
            console.print(f"      | {line}")


def print_timeline(report: SimulationReport, reference: str, console: Console) -> None:
    """A contact's events, decisions and messages in time order."""
    console.print()
    if report.contact is None:
        console.print(Text(f"No contact matches {reference!r}", style="yellow"))
        return
    console.print(Text(f"Timeline of contact {report.contact} ({reference})", style="bold"))
    for entry in report.timeline:
        where = f" {entry.workflow}" if entry.workflow else ""
        console.print(f"  {entry.at} {entry.kind}{where}: {entry.text}")
