"""Structured logs for the daemon: one JSON object per line on stderr (or plain text).

Each line has `ts`, `level`, `logger`, `message`, and any `extra={...}` fields given at the call
site. Secrets never reach a log line: settings are logged only through `describe_settings`,
which keeps database and SMTP URLs with their passwords hidden and never includes API keys, SMS
keys or the secret key; and every line passes through `redact`, which masks the values of
configured secrets should one ever appear in a message (e.g. inside an exception's text).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tidings.adapters.smtp_url import parse_smtp_url
from tidings.adapters.sql.engine import database_url
from tidings.errors import ConfigError
from tidings.settings import Settings

# Attributes every LogRecord has: anything else on a record came from `extra=`.
# `color_message` is uvicorn's terminal copy of its message.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
MASK = "***"


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False), self._secrets)


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal, with the same redaction."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text."""
        return redact(super().format(record), self._secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret's value masked."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, so log lines can mask them."""
    values = [key.get_secret_value() for key in (*settings.api_keys, *settings.tracker_keys)]
    if settings.secret_key is not None:
        values.append(settings.secret_key.get_secret_value())
    if settings.sms_key is not None:
        values.append(settings.sms_key.get_secret_value())
    if settings.smtp_url is not None:
        try:
            password = parse_smtp_url(settings.smtp_url.get_secret_value()).password
        except (ConfigError, ValueError):
            password = None
        if password:
            values.append(password)
    try:
        password = database_url(settings.database_url).password
    except ConfigError:
        password = None
    if password:
        values.append(str(password))
    return values


def configure_logging(settings: Settings) -> None:
    """Send every logger's records to stderr in the configured format and level."""
    secrets = secret_values(settings)
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(secrets))
    else:
        handler.setFormatter(TextFormatter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Uvicorn's loggers propagate to ours rather than printing their own way.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def describe_settings(settings: Settings) -> dict[str, Any]:
    """What the daemon runs with, for its start-up log line: no secrets, passwords hidden."""
    smtp = None
    if settings.smtp_url is not None:
        try:
            smtp = parse_smtp_url(settings.smtp_url.get_secret_value()).redacted()
        except (ConfigError, ValueError):
            smtp = "(invalid)"
    return {
        "database": database_url(settings.database_url).render_as_string(hide_password=True),
        "smtp": smtp,
        "outbox_dir": None if smtp else str(settings.outbox_dir),
        "sms": settings.sms_url or f"outbox folder {settings.outbox_dir}",
        "workflows_dir": str(settings.workflows_dir),
        "templates_dir": str(settings.templates_dir),
        "public_url": settings.link_base(),
        "api_keys": len(settings.api_keys),
        "tracker_keys": len(settings.tracker_keys),
        "clock_file": str(settings.clock_file) if settings.clock_file else None,
    }
