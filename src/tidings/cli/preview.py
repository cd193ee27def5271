"""`tidings preview`: every message a workflow can send for a sample event, before anything is sent.

Text output (the default) is a header, the timeline of every path (waits, both sides of each
branch, sends, ends; `← this event` marks the way the sample event goes), then each message in
full: recipient, sender, subject, text part, and for an SMS its characters, encoding and
segments. HTML parts are written to `--out` (default `preview/`) as `NN-TEMPLATE.html`, and
opened in a browser with `--open`. `--format json` prints the stable document of
`tidings.service.preview_report` instead, for golden-file tests.

Exit status: 0 when every message rendered; 1 when the workflow or its templates do not validate
(problems print as `file:line:col: path: message`) or any message or path failed (each fails
alone: the others still print); 2 for a usage error (a missing or malformed event file).
"""

from __future__ import annotations

import json
import webbrowser
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from tidings.cli.event_files import read_contact, read_event
from tidings.cli.validate import problem_text
from tidings.compile.loader import load_workflow
from tidings.compile.templates import TemplateCatalog
from tidings.engine.decision import Environment
from tidings.engine.timing import zone_named
from tidings.errors import ConfigError, EventError
from tidings.service.consent import unsubscribe_url
from tidings.service.preview import preview_workflow
from tidings.service.preview_report import (
    EntryKind,
    MessageStatus,
    PreviewMessage,
    PreviewReport,
    local_time,
    report_document,
    signed,
)
from tidings.settings import Settings, load_settings

# The daemon's links carry a signed token; a preview shows the same link with this stand-in.
PLACEHOLDER_TOKEN = "preview"  # noqa: S105 - not a secret: it stands in for one


class OutputFormat(StrEnum):
    """How the preview is printed."""

    text = "text"
    json = "json"


def preview(
    workflow: Annotated[
        Path, typer.Argument(help="The workflow file to preview.", dir_okay=False, exists=True)
    ],
    *,
    event: Annotated[
        Path,
        typer.Option(
            "--event", help="A sample event in Brevo's /v3/events shape (JSON).", dir_okay=False
        ),
    ],
    contact: Annotated[
        Path | None,
        typer.Option(
            "--contact",
            help="The contact: identifiers, attributes, timezone (default: from the event).",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option(
            "--templates",
            help="Templates folder (default: templates, TIDINGS_TEMPLATES_DIR).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder the HTML parts are written to.", file_okay=False)
    ] = Path("preview"),
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the HTML parts in a web browser.")
    ] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for golden files.")
    ] = OutputFormat.text,
) -> None:
    """Render every message a workflow would send for an event, on every path."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console = Console(soft_wrap=True, highlight=False)
    problems_console = (
        console
        if output is OutputFormat.text
        else Console(stderr=True, soft_wrap=True, highlight=False)
    )
    catalog = _catalog(templates, settings.templates_dir)
    loaded = load_workflow(_relative(workflow), catalog)
    problems = [*catalog.problems, *loaded.problems]
    for problem in problems:
        problems_console.print(problem_text(problem))
    if loaded.workflow is None:
        raise typer.Exit(1)
    try:
        sample = read_event(_relative(event), now=datetime.now(UTC))
    except EventError as exc:
        raise typer.BadParameter(str(exc), param_hint="--event") from exc
    try:
        person, history = read_contact(_relative(contact) if contact else None, sample)
    except EventError as exc:
        raise typer.BadParameter(str(exc), param_hint="--contact") from exc
    report = preview_workflow(
        loaded.workflow, sample, person, _environment(catalog, settings), history=history
    )
    written = write_html(report, out)
    if output is OutputFormat.json:
        typer.echo(report_json(report), nl=False)
        for error in report.errors:
            problems_console.print(Text(f"error: {error}", style="red"))
    else:
        print_report(report, console, out)
    if open_browser:
        for path in written:
            webbrowser.open(path.resolve().as_uri())
    if problems or not report.ok:
        raise typer.Exit(1)


def report_json(report: PreviewReport) -> str:
    """The report as the stable JSON document, keys sorted, ending with a newline."""
    return json.dumps(report_document(report), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_html(report: PreviewReport, out: Path) -> list[Path]:
    """Write each message's HTML part into `out`; the paths written, in message order."""
    written: list[Path] = []
    for message in report.messages:
        if message.html is None or message.html_file is None:
            continue
        try:
            out.mkdir(parents=True, exist_ok=True)
            path = out / message.html_file
            path.write_text(message.html, encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot write: {exc}", param_hint="--out") from exc
        written.append(path)
    return written


# ---------------------------------------------------------------------- text output


def print_report(report: PreviewReport, console: Console, out: Path) -> None:
    """The header, the timeline of every path, each message in full, then a summary."""
    zone = zone_named(report.zone) or UTC
    title = Text(report.workflow_id, style="bold")
    if report.name:
        title.append(f" · {report.name}")
    title.append(f" · {report.source}", style="dim")
    console.print(title)
    _field(console, "event", f"{report.event_name}, {local_time(report.event_date, zone)}")
    if report.key:
        _field(console, "key", report.key)
    who = ", ".join(x for x in (report.contact_email, report.contact_phone, report.zone) if x)
    _field(console, "contact", who)
    for goal in report.goals:
        _field(console, "exits on", goal)
    for note in report.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    console.print()
    _timeline(report, console)
    for message in report.messages:
        console.print()
        _message(message, console, out)
    console.print()
    for error in report.errors:
        console.print(Text(f"error: {error}", style="red"))
    console.print(_summary(report))


def _timeline(report: PreviewReport, console: Console) -> None:
    console.print(Text("Timeline", style="bold"))
    width = max((len(signed(entry.offset)) for entry in report.timeline), default=0) + 2
    for entry in report.timeline:
        line = Text(f"  {signed(entry.offset):<{width}}", style="cyan")
        line.append("  " * entry.depth)
        if entry.kind is EntryKind.branch:
            line.append(f"▸ {entry.text}", style="bold")
            if entry.sample:
                line.append("  ← this event", style="green")
        elif entry.kind is EntryKind.end:
            line.append(entry.text, style="dim")
        else:
            line.append(entry.text, style="red" if entry.error else "")
        console.print(line)
        if entry.error:
            indent = " " * (2 + width + 2 * entry.depth)
            console.print(Text(f"{indent}error: {entry.error}", style="red"))


def _message(message: PreviewMessage, console: Console, out: Path) -> None:
    kind = "transactional" if message.transactional else "marketing"
    head = f"Message {message.number} · {message.what} · {kind} · {signed(message.offset)}"
    console.print(Text(f"{head} · {message.local}", style="bold"))
    if message.branches:
        _field(console, "path", " → ".join(message.branches), indent=2)
    if message.status is MessageStatus.deferred:
        console.print(Text(f"  {message.problem}", style="yellow"))
    elif message.status is not MessageStatus.ready:
        style = "red" if message.status is MessageStatus.error else "yellow"
        console.print(Text(f"  {message.status.value}: {message.problem}", style=style))
    for label, value in (
        ("to", message.to),
        ("from", message.sender),
        ("reply to", message.reply_to),
        ("subject", message.subject),
        ("html", str(out / message.html_file) if message.html_file else None),
        ("unsubscribe", message.unsubscribe_url if message.channel.value == "email" else None),
    ):
        if value:
            _field(console, label, value, indent=2)
    if message.sms is not None:
        sms = message.sms
        segments = f"{sms.segments} segment{'' if sms.segments == 1 else 's'}"
        _field(console, "sms", f"{sms.characters} characters · {sms.encoding} · {segments}", 2)
    if message.text is not None:
        for line in message.text.splitlines() or [""]:
            console.print(Text("  │ ", style="dim") + Text(line))


def _field(console: Console, label: str, value: str, indent: int = 0) -> None:
    console.print(Text(" " * indent) + Text(f"{label:<12}", style="dim") + Text(value))


def _summary(report: PreviewReport) -> str:
    messages = len(report.messages)
    paths = len(report.paths)
    errors = len(report.errors)
    return (
        f"{messages} message{'' if messages == 1 else 's'} on {paths} path"
        f"{'' if paths == 1 else 's'}, "
        + (f"{errors} error{'' if errors == 1 else 's'}" if errors else "no errors")
    )


# ---------------------------------------------------------------------- helpers


def _environment(catalog: TemplateCatalog, settings: Settings) -> Environment:
    placeholder = unsubscribe_url(settings.link_base(), PLACEHOLDER_TOKEN)
    return Environment(
        templates=catalog,
        mail_from=settings.mail_from,
        sms_sender=settings.sms_sender,
        unsubscribe_url=lambda _contact, _channel: placeholder,
    )


def _catalog(option: Path | None, default: Path) -> TemplateCatalog:
    """The templates to render with; a missing default folder means no templates at all."""
    if option is not None and not option.is_dir():
        raise typer.BadParameter(f"no such folder: {option}", param_hint="--templates")
    folder = _relative(option or default)
    return TemplateCatalog.load(folder) if folder.is_dir() else TemplateCatalog.empty()


def _relative(path: Path) -> Path:
    """`path` relative to the working folder when it is inside it, so output names no home."""
    if not path.is_absolute():
        return path
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path
