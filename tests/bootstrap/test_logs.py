"""Daemon logs: one JSON object per line, call-site fields kept, secrets never printed."""

from __future__ import annotations

import json
import logging

from tidings.bootstrap.logs import JsonFormatter, describe_settings, secret_values
from tidings.settings import load_settings

SETTINGS = {
    "TIDINGS_DATABASE_URL": "postgresql://tidings:db-pass-123@db.internal/tidings",
    "TIDINGS_SMTP_URL": "smtp://mailer:smtp-pass-456@relay.internal:587?starttls=true",
    "TIDINGS_SMS_URL": "https://api.brevo.example/v3",
    "TIDINGS_SMS_KEY": "sms-key-789",
    "TIDINGS_API_KEYS": "api-key-aaa,api-key-bbb",
    "TIDINGS_TRACKER_KEYS": "tracker-key-ccc",
    "TIDINGS_SECRET_KEY": "link-secret-ddd",
}
SECRETS = [
    "db-pass-123",
    "smtp-pass-456",
    "sms-key-789",
    "api-key-aaa",
    "api-key-bbb",
    "tracker-key-ccc",
    "link-secret-ddd",
]


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("tidings.daemon", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_record_is_one_json_line_with_its_extra_fields() -> None:
    line = JsonFormatter().format(record("engine pass %d", 3, events=2, timers=1))

    parsed = json.loads(line)
    assert "\n" not in line
    assert parsed["level"] == "warning"
    assert parsed["logger"] == "tidings.daemon"
    assert parsed["message"] == "engine pass 3"
    assert (parsed["events"], parsed["timers"]) == (2, 1)
    assert parsed["ts"].endswith("+00:00")


def test_every_configured_secret_is_masked_wherever_it_appears() -> None:
    settings = load_settings(environ=SETTINGS)
    formatter = JsonFormatter(secret_values(settings))

    message = "relay said: " + " ".join(["%s"] * len(SECRETS))
    text = formatter.format(record(message, *SECRETS, leaked=SECRETS))

    assert sorted(secret_values(settings)) == sorted(SECRETS)
    assert not [secret for secret in SECRETS if secret in text]
    assert text.count("***") == 2 * len(SECRETS)


def test_the_start_up_description_names_the_setup_without_any_secret() -> None:
    described = describe_settings(load_settings(environ=SETTINGS))

    text = json.dumps(described)
    assert not [secret for secret in SECRETS if secret in text]
    assert described["database"] == "postgresql+psycopg://tidings:***@db.internal/tidings"
    assert described["smtp"] == "smtp://mailer:***@relay.internal:587?starttls=true"
    assert (described["api_keys"], described["tracker_keys"]) == (2, 1)
