"""`tidings validate`: every problem in every workflow and template, one per line.

Each problem prints as `file:line:col: path: message`, so the output can be grepped or read by an
editor's problem matcher; then a summary line `N files (W workflows, T templates), M problems`
(template files counted among the files checked). A template file is named by a path that can
be opened from the working folder (relative when under it, else absolute). Exit status: 0 when
all is well, 1 when anything is wrong, 2 for a usage error (a path that does not exist).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from tidings.compile.loader import LoadReport, load_workflows
from tidings.compile.templates import TemplateCatalog
from tidings.errors import ConfigError, Problem
from tidings.settings import load_settings


def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Workflow files or folders (default: workflows, TIDINGS_WORKFLOWS_DIR).",
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
) -> None:
    """Check workflows and templates; print every problem as file:line:col."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc
    targets = list(paths) if paths else [settings.workflows_dir]
    for path in targets:
        if not path.exists():
            raise typer.BadParameter(f"no such file or folder: {path}", param_hint="PATHS")
    catalog = _catalog(templates, settings.templates_dir)
    report = load_workflows(targets, catalog)
    print_report(report, Console(soft_wrap=True, highlight=False))
    if report.problems:
        raise typer.Exit(1)


def _catalog(option: Path | None, default: Path) -> TemplateCatalog:
    """The catalog to check against; a missing default folder means no templates at all."""
    if option is not None and not option.is_dir():
        raise typer.BadParameter(f"no such folder: {option}", param_hint="--templates")
    folder = option or default
    return TemplateCatalog.load(folder) if folder.is_dir() else TemplateCatalog.empty()


def print_report(report: LoadReport, console: Console) -> None:
    """Print each problem on its own line, then `N files, M problems`."""
    for problem in report.problems:
        console.print(problem_text(problem))
    console.print(summary(report.files, len(report.problems), templates=report.templates))


def problem_text(problem: Problem) -> Text:
    """One problem as a styled line; the plain text is `str(problem)`."""
    text = Text(str(problem.location), style="bold")
    text.append(": ")
    if problem.path:
        text.append(problem.path, style="cyan")
        text.append(": ")
    text.append(problem.message, style="red")
    return text


def summary(files: int, problems: int, *, templates: int = 0) -> str:
    """`1 file, 0 problems`; with templates `7 files (3 workflows, 4 templates), 2 problems`."""
    if not templates:
        return f"{_count(files, 'file')}, {_count(problems, 'problem')}"
    kinds = f"{_count(files, 'workflow')}, {_count(templates, 'template')}"
    return f"{_count(files + templates, 'file')} ({kinds}), {_count(problems, 'problem')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
