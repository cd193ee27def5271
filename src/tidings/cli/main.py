"""The `tidings` command line: one Typer app, each command in its own module under cli/.

To add a command, write `cli/NAME.py` with one function (its docstring is the help text) and
register it below with one line: `app.command("NAME")(NAME.NAME)`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tidings import __version__
from tidings.cli import (
    db,
    explain,
    import_cmd,
    keys,
    preview,
    run,
    schema,
    simulate,
    status,
    validate,
)

app = typer.Typer(
    name="tidings",
    help="Tidings: custom events in, automations out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"tidings {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Tidings: custom events in, automations out."""


app.command("validate")(validate.validate)
app.command("schema")(schema.schema)
app.command("preview")(preview.preview)
app.command("simulate")(simulate.simulate)
app.command("import")(import_cmd.import_events)
app.command("run")(run.run)
app.command("status")(status.status)
app.command("explain")(explain.explain)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")


def main() -> None:
    """Entry point of the `tidings` console script."""
    app()
