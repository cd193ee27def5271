"""`tidings import FILE`: load an event log (JSONL, or CSV with `--mapping`) into Tidings.

Straight into the database (`--database URL`, default the configured one), or into a running
daemon (`--url http://HOST:PORT --api-key KEY`, over `POST /v3/events/batch` with
`X-Tidings-Mode: history`). Either way as history by default — stored as already processed, so
`has_event` and `count_events` see the events but no workflow starts — or, with `--trigger`,
for the workflows to process (the daemon applies them when it next looks at its log).
Importing the same file twice stores each event once.

Refused rows are printed with their line number and reason and the good rows are imported all
the same; skipped rows (event names the mapping leaves out) are counted by reason. A progress
bar is drawn on stderr when it is a terminal.

Exit status: 0 when every row was imported; 1 when a row was refused; 2 for a usage error or
when the daemon refused the import as a whole (a bad key, an unreachable URL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from tidings.adapters.events_client import EventsClient, ImportRefusedError
from tidings.bootstrap.importing import ImportResult, import_into_database, import_over_http
from tidings.cli.simulate import RateColumn
from tidings.errors import ConfigError, StoreError
from tidings.settings import load_settings

SHOWN = 50  # refused rows printed before "... and N more"


def import_events(
    events: Annotated[
        Path, typer.Argument(help="Event file: JSONL (/v3/events shape) or CSV.", dir_okay=False)
    ],
    *,
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="Column mapping for a CSV file.", dir_okay=False),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", help="Database URL (default: TIDINGS_DATABASE_URL)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="A running daemon, http://HOST:PORT."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="API key for --url (default: the first TIDINGS_API_KEYS)."),
    ] = None,
    trigger: Annotated[
        bool, typer.Option("--trigger", help="Let the workflows process the events.")
    ] = False,
) -> None:
    """Import events into the database or a running daemon (as history by default)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if not events.is_file():
        raise typer.BadParameter(f"no such file: {events}", param_hint="EVENTS")
    if url is not None and database is not None:
        raise typer.BadParameter("give --url or --database, not both", param_hint="--url")
    errors = Console(stderr=True, soft_wrap=True, highlight=False)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=errors,
        disable=not errors.is_terminal,
    )
    task = progress.add_task("importing", total=None)

    def on_read(count: int) -> None:
        progress.update(task, total=count)

    def advance(count: int) -> None:
        progress.advance(task, count)

    try:
        with progress:
            if url is not None:
                key = api_key or _configured_key(settings.api_keys)
                client = EventsClient(url, key, history=not trigger)
                try:
                    result = import_over_http(
                        events, mapping, client, settings, on_read=on_read, progress=advance
                    )
                finally:
                    client.close()
            else:
                result = import_into_database(
                    events,
                    mapping,
                    database or settings.database_url,
                    settings,
                    trigger=trigger,
                    on_read=on_read,
                    progress=advance,
                )
    except (ConfigError, ImportRefusedError, StoreError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    print_result(result, Console(soft_wrap=True, highlight=False), url is not None)
    if result.refused:
        raise typer.Exit(1)


def _configured_key(keys: list[SecretStr]) -> str:
    """The first configured API key: a local import needs no key typed out."""
    if not keys:
        raise typer.BadParameter("--url needs --api-key (or TIDINGS_API_KEYS)")
    return keys[0].get_secret_value()


def print_result(result: ImportResult, console: Console, over_http: bool) -> None:
    """What was imported, then every refused row (up to SHOWN) and the skipped rows by reason."""
    use = "for the workflows to process" if result.triggered else "as history (no workflow)"
    if over_http:
        # The daemon answers a repeat as it answers new events: it cannot say "already stored".
        what = f"{result.stored} events accepted by the daemon {use}"
    else:
        what = f"{result.stored} events stored {use}"
        if result.duplicates:
            what += f", {result.duplicates} already stored"
    console.print(
        f"{result.rows} rows: {what}; refused {len(result.refused)};"
        f" skipped {sum(result.skipped.values())}"
    )
    for problem in result.refused[:SHOWN]:
        console.print(Text(f"line {problem.line}: {problem.reason}", style="red"))
    if len(result.refused) > SHOWN:
        console.print(f"... and {len(result.refused) - SHOWN} more refused rows")
    for reason, count in sorted(result.skipped.items()):
        console.print(Text(f"skipped {count}: {reason}", style="yellow"))
