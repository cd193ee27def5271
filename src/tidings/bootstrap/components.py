"""The composition root: the ONE place that picks concrete adapters from Settings.

- store: `SqlStore(database_url)` (SQLite by default, PostgreSQL by URL), wrapped in a
  `MeteredStore` so `/metrics` counts what commits;
- email: `SmtpSender` when `smtp_url` is set, else `.eml` files in `outbox_dir`;
- SMS: `HttpSmsSender` when `sms_url` is set, else `.txt` files in `outbox_dir`;
- clock: the system clock, or (tests only) a `FileClock` when `clock_file` is set;
- workflows and templates from their directories, and the rendering Environment whose
  unsubscribe links are `public_url/u/<signed token>` (`public_url` defaulting to the address
  the daemon serves).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from tidings.adapters.clock import SystemClock
from tidings.adapters.file_clock import FileClock
from tidings.adapters.http.auth import KeyChecker
from tidings.adapters.metrics import MeteredStore, Metrics
from tidings.adapters.outbox_dir import OutboxDirSender
from tidings.adapters.sms_http import HttpSmsSender
from tidings.adapters.smtp import SmtpSender
from tidings.adapters.smtp_url import parse_smtp_url
from tidings.adapters.sql.keys import SqlKeyStore
from tidings.adapters.sql.migrate import head_revision
from tidings.adapters.sql.store import SqlStore
from tidings.engine.core import Environment
from tidings.model.contacts import Channel
from tidings.model.messages import Message
from tidings.ports import Clock, EmailSender, SmsSender, Store
from tidings.service.consent import ConsentTokens, unsubscribe_url
from tidings.service.registry import LoadOutcome, WorkflowRegistry
from tidings.settings import Settings

log = logging.getLogger("tidings.daemon")
CONSENT_ROW = "consent"  # the name of its row in instance_secrets


@dataclass
class LinkBase:
    """Where unsubscribe links point now: follows the port the daemon bound (`--port 0`)
    while `public_url` is not set."""

    settings: Settings
    bound_port: int | None = None

    def __call__(self) -> str:
        """The base URL of links, e.g. `http://127.0.0.1:8025`."""
        return self.settings.link_base(self.bound_port)


@dataclass
class Components:
    """Everything the daemon and the commands run on, built from one Settings."""

    settings: Settings
    sql: SqlStore  # the concrete store: migrations, revision, close
    store: Store  # what services use: the SQL store, metered
    metrics: Metrics
    clock: Clock
    tokens: ConsentTokens
    registry: WorkflowRegistry
    loaded: LoadOutcome
    env: Environment
    email: EmailSender
    sms: SmsSender
    keys: KeyChecker
    key_store: SqlKeyStore
    links: LinkBase

    def schema_at_head(self) -> bool:
        """Whether the database is at the newest migration this version knows."""
        return self.sql.current_revision() == head_revision()

    def close(self) -> None:
        """Close the store's connections (senders are closed by the daemon's loop)."""
        self.sql.close()
        self.key_store.close()


def pick_clock(settings: Settings) -> Clock:
    """The system clock, or the test-only file clock when `clock_file` is set."""
    if settings.clock_file is not None:
        return FileClock(settings.clock_file)
    return SystemClock()


def run_secret(settings: Settings) -> str:
    """The secret for links nobody will follow (simulations): the configured one, else a
    random one for this run."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    return secrets.token_urlsafe(32)


def consent_secret(settings: Settings, key_store: SqlKeyStore, clock: Clock) -> str:
    """The secret that signs unsubscribe links: `secret_key`, else one generated once per
    database and stored in it, so links keep working across restarts and daemons while no two
    deployments share one (a published default would let anyone forge unsubscribes)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    secret, made = key_store.instance_secret(
        CONSENT_ROW, make=lambda: secrets.token_urlsafe(32), now=clock.now()
    )
    log.warning(
        "secret_key is not set: unsubscribe links are signed with a secret %s this database"
        " (table instance_secrets); set TIDINGS_SECRET_KEY to choose it",
        "generated now and stored in" if made else "stored earlier in",
    )
    return secret


def make_environment(
    settings: Settings,
    registry: WorkflowRegistry,
    tokens: ConsentTokens,
    links: Callable[[], str] | None = None,
) -> Environment:
    """What rendering needs: templates, default senders, unsubscribe links."""
    base = links or LinkBase(settings)

    def link(contact_id: str, channel: Channel) -> str:
        return unsubscribe_url(base(), tokens.create(contact_id, channel))

    return Environment(
        templates=registry.catalog,
        mail_from=settings.mail_from,
        sms_sender=settings.sms_sender,
        unsubscribe_url=link,
    )


def make_email_sender(
    settings: Settings, tokens: ConsentTokens, links: Callable[[], str]
) -> EmailSender:
    """SMTP when configured, else `.eml` files in the outbox folder."""

    def list_unsubscribe(message: Message) -> str | None:
        if message.transactional:
            return None
        token = tokens.create(message.contact_id, Channel.email)
        return unsubscribe_url(links(), token)

    if settings.smtp_url is None:
        return OutboxDirSender(
            settings.outbox_dir, mail_from=settings.mail_from, unsubscribe_url=list_unsubscribe
        )
    return SmtpSender(
        parse_smtp_url(settings.smtp_url.get_secret_value()),
        connections=settings.smtp_connections,
        timeout_s=settings.smtp_timeout_s,
        mail_from=settings.mail_from,
        unsubscribe_url=list_unsubscribe,
    )


def make_sms_sender(settings: Settings) -> SmsSender:
    """The HTTP provider when configured, else `.txt` files in the outbox folder."""
    if settings.sms_url is None:
        return OutboxDirSender(settings.outbox_dir)
    key = settings.sms_key.get_secret_value() if settings.sms_key else ""
    return HttpSmsSender(settings.sms_url, key, sender=settings.sms_sender)


def open_store(settings: Settings) -> SqlStore:
    """The store alone, for commands that only read it (status, explain); never migrates."""
    return SqlStore(settings.database_url)


def build_components(settings: Settings, *, clock: Clock | None = None) -> Components:
    """Every adapter the settings call for; migrates first when `migrate_on_start`."""
    sql = SqlStore(settings.database_url)
    if settings.migrate_on_start:
        sql.migrate()
    metrics = Metrics()
    store = MeteredStore(sql, metrics)
    registry, loaded = WorkflowRegistry.from_directory(
        settings.workflows_dir, settings.templates_dir
    )
    key_store = SqlKeyStore(settings.database_url)
    used_clock = clock or pick_clock(settings)
    tokens = ConsentTokens(consent_secret(settings, key_store, used_clock))
    keys = KeyChecker(
        api_keys=[k.get_secret_value() for k in settings.api_keys],
        tracker_keys=[k.get_secret_value() for k in settings.tracker_keys],
        lookup=key_store,
        clock=used_clock,
    )
    links = LinkBase(settings)
    return Components(
        settings=settings,
        sql=sql,
        store=store,
        metrics=metrics,
        clock=used_clock,
        tokens=tokens,
        registry=registry,
        loaded=loaded,
        env=make_environment(settings, registry, tokens, links),
        email=make_email_sender(settings, tokens, links),
        sms=make_sms_sender(settings),
        keys=keys,
        key_store=key_store,
        links=links,
    )
