"""`tidings run`: the daemon — HTTP API, engine, scheduler and delivery in one process.

Configured by `tidings.toml` (or `--config FILE`) and `TIDINGS_*` variables, the latter
winning; `--host` and `--port` win over both. Logs are JSON lines on stderr. Exit status: 0
after a graceful stop (SIGTERM, SIGINT), 1 when the server stopped by itself, 2 when the
settings or the database cannot be used.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from tidings.bootstrap.components import build_components
from tidings.bootstrap.daemon import run_daemon
from tidings.bootstrap.logs import configure_logging, describe_settings
from tidings.errors import ConfigError, StoreError
from tidings.settings import WILDCARD_HOSTS, load_settings

log = logging.getLogger("tidings.daemon")


def run(
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (TIDINGS_HOST; default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port to listen on (TIDINGS_PORT; default 8025; 0: any)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Settings file (default: ./tidings.toml if present)."),
    ] = None,
) -> None:
    """Run the daemon: HTTP API, engine, scheduler and delivery; SIGHUP reloads workflows."""
    try:
        settings = load_settings(config, os.environ, host=host, port=port)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings)
    log.info("starting", extra={"settings": describe_settings(settings)})
    if settings.public_url is None and settings.host in WILDCARD_HOSTS:
        log.warning(
            "public_url is not set: unsubscribe links point at %s; set TIDINGS_PUBLIC_URL to "
            "the address people reach this daemon at",
            settings.link_base(),
        )
    try:
        components = build_components(settings)
    except (ConfigError, StoreError, OSError) as exc:
        log.error("cannot start: %s", exc)
        raise typer.Exit(2) from exc
    for problem in components.loaded.problems:
        log.error("workflow problem: %s", problem, extra={"file": problem.location.file})
    log.info(
        "workflows loaded",
        extra={
            "workflows": [f"{w.id}@{w.version}" for w in components.registry.current],
            "problems": len(components.loaded.problems),
        },
    )
    try:
        code = run_daemon(components, host=settings.host, port=settings.port)
    except OSError as exc:  # e.g. the port is taken
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        components.close()
        raise typer.Exit(2) from exc
    raise typer.Exit(code)
