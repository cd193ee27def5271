"""Settings, read once at the composition root: `tidings.toml`, then `TIDINGS_*` variables."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tidings.errors import ConfigError

# Addresses that listen everywhere: no link can name them. Compared against, never bound here.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104


def _split_keys(value: Any) -> Any:
    """`TIDINGS_API_KEYS=a,b` and TOML lists both become a list of keys."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything configurable. Defaults run with nothing configured: SQLite file, outbox folder."""

    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="forbid")

    database_url: str = "sqlite:///tidings.db"
    migrate_on_start: bool = True
    workflows_dir: Path = Path("workflows")
    templates_dir: Path = Path("templates")
    outbox_dir: Path = Path("outbox")
    smtp_url: SecretStr | None = None
    smtp_timeout_s: float = 30.0
    smtp_connections: int = 4
    # How long a message that keeps failing temporarily (an outage) is retried before it fails.
    delivery_max_age_s: float = Field(default=259_200.0, gt=0)
    mail_from: str = "Tidings <no-reply@localhost>"
    sms_url: str | None = None
    sms_key: SecretStr | None = None
    sms_sender: str = "Tidings"
    # None: links point at the address served (`link_base`), so `--port` moves them too.
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8025
    api_keys: list[SecretStr] = Field(default_factory=list)
    tracker_keys: list[SecretStr] = Field(default_factory=list)
    # None: the daemon generates one and keeps it in the database (bootstrap/components.py).
    secret_key: SecretStr | None = None
    # Ingestion limits (docs/ingestion.md): body sizes, duplicate window, clock skew, rate limit.
    max_body_bytes: int = 1_048_576
    max_batch_body_bytes: int = 10_485_760
    duplicate_window_s: float = 300.0
    event_date_tolerance_s: float = 86_400.0
    rate_limit_per_minute: int | None = None
    log_level: str = "INFO"
    log_format: str = "json"
    # Daemon: how long SIGTERM waits for in-flight deliveries (the rest return to the outbox).
    shutdown_grace_s: float = 20.0
    # Test-only (docs: bootstrap/daemon.py): read the time from this file instead of the system
    # clock, and let SIGUSR1 make the daemon look at what is due. Off unless set.
    clock_file: Path | None = None

    _keys = field_validator("api_keys", "tracker_keys", mode="before")(_split_keys)

    def link_base(self, port: int | None = None) -> str:
        """Where unsubscribe links point: `public_url`, else the address served (at `port`,
        the one actually bound, when given); a wildcard host is reached on loopback."""
        if self.public_url:
            return self.public_url
        host = self.host
        if host in WILDCARD_HOSTS:
            host = "[::1]" if ":" in host else "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port if port is None else port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # `load_settings` merges file, environment and overrides itself, in that order, from
        # mappings it is given: no hidden read of os.environ.
        return (init_settings,)


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from `tidings.toml` (or `config_file`), `TIDINGS_*` variables, then overrides."""
    values: dict[str, Any] = {}
    path = config_file or Path("tidings.toml")
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    elif config_file is not None:
        raise ConfigError(f"{config_file}: no such configuration file")
    for key, value in (os.environ if environ is None else environ).items():
        name = key[len("TIDINGS_") :].lower()
        # The environment is shared with other tools (and our tests' TIDINGS_TEST_*): only
        # names that are settings are taken; the config file, ours alone, stays strict.
        if key.upper().startswith("TIDINGS_") and name in Settings.model_fields:
            values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {reasons}") from exc
