"""`tidings explain CONTACT [WORKFLOW]`: why a contact got, or did not get, a message.

CONTACT is a contact id or any identifier the contact holds (an email address, an ext_id, a
phone number). Prints every decision the engine took for that contact (trigger matches,
condition values, waits and their due times, exits and skips with their reasons, sends), the
state of each run and message, and what is due next and when. Exit status 1 when no contact
matches, 2 when the settings or the database cannot be used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tidings.bootstrap.components import open_store, pick_clock
from tidings.errors import ConfigError, StoreError
from tidings.service.explain import explain as explain_report
from tidings.service.explain import read_report
from tidings.settings import load_settings


def explain(
    contact: Annotated[str, typer.Argument(help="Contact id, email, ext_id or phone number.")],
    workflow: Annotated[
        str | None, typer.Argument(help="Only this workflow.", show_default=False)
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Settings file (default: ./tidings.toml if present)."),
    ] = None,
) -> None:
    """Explain what happened to a contact, and what is next and when."""
    try:
        settings = load_settings(config, os.environ)
        store = open_store(settings)
        clock = pick_clock(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        report = read_report(store, contact, workflow)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        store.close()
    if report is None:
        typer.echo(f"no contact matches {contact!r}", err=True)
        raise typer.Exit(1)
    typer.echo(explain_report(report, clock.now()), nl=False)
