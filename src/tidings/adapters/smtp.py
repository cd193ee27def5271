"""Email over SMTP with aiosmtplib: a small pool of open connections, one recipient per message.

Replies about the message (MAIL, RCPT, DATA) decide its fate: 4xx is temporary, 5xx permanent,
and the error text carries the server's code and reply. Trouble with the relay itself
(refused or lost connection, timeout, TLS or authentication failure) is always temporary:
fixing the relay's settings must not have failed every message in the meantime.

Delivery is at-least-once at the SMTP boundary: if the connection drops after the server has
taken the message but before its reply reaches us, the outbox sends it again. That cannot be
avoided with SMTP; the Message-ID is the same on every attempt, so receivers can deduplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import aiosmtplib

from tidings.adapters.email_message import build_email, envelope, needs_smtputf8, to_bytes
from tidings.adapters.smtp_mail import send_mail
from tidings.adapters.smtp_url import SmtpUrl, TlsMode
from tidings.errors import PermanentDeliveryError, TemporaryDeliveryError
from tidings.model.messages import Message

log = logging.getLogger(__name__)

_CONNECTION_ERRORS = (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError)


class SmtpSender:
    """An EmailSender that talks SMTP to one server, reusing up to `connections` connections."""

    def __init__(
        self,
        url: SmtpUrl,
        *,
        connections: int = 4,
        timeout_s: float = 30,
        mail_from: str | None = None,
        unsubscribe_url: Callable[[Message], str | None] | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self._url = url
        self._connections = connections
        self._timeout_s = url.timeout_s or timeout_s
        self._mail_from = mail_from
        self._unsubscribe_url = unsubscribe_url
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[aiosmtplib.SMTP] = []
        self.connections_opened = 0  # how many connections were ever opened, for tests and stats

    def __repr__(self) -> str:
        return f"SmtpSender({self._url}, connections={self._connections})"

    async def send_email(self, message: Message) -> str:
        """Send one message to its one recipient and return its Message-ID."""
        link = self._unsubscribe_url(message) if self._unsubscribe_url else None
        mail = build_email(message, list_unsubscribe=link, default_sender=self._mail_from)
        sender, recipient = envelope(message, default_sender=self._mail_from)
        utf8 = needs_smtputf8(sender, recipient)
        data = to_bytes(mail, utf8=utf8)
        self._bind_to_running_loop()
        async with self._slots:
            client = self._take_idle()
            # A pooled connection may have been closed by the server while idle; that shows
            # only when we use it, so a reused connection gets one fresh replacement.
            for reused in [True, False] if client is not None else [False]:
                if client is None:
                    client = await self._connect()
                try:
                    if utf8 and not client.supports_extension("smtputf8"):
                        self._idle.append(client)
                        raise PermanentDeliveryError(
                            f"{recipient.addr_spec}: address needs SMTPUTF8, "
                            "which the server does not offer"
                        )
                    await send_mail(
                        client,
                        sender.addr_spec,
                        recipient.addr_spec,
                        data,
                        mail_options=_mail_options(client, utf8=utf8),
                        timeout_s=self._timeout_s,
                    )
                except aiosmtplib.SMTPTimeoutError as exc:
                    # The server may still be busy with the message: no second try here.
                    self._discard(client)
                    raise TemporaryDeliveryError(f"{self._where} timed out: {exc}") from exc
                except _CONNECTION_ERRORS as exc:
                    self._discard(client)
                    client = None
                    if reused:
                        continue
                    raise TemporaryDeliveryError(f"lost {self._where}: {exc}") from exc
                except aiosmtplib.SMTPException as exc:
                    self._release(client)
                    raise _reply_error(exc) from exc
                self._idle.append(client)
                return message.message_id
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    async def aclose(self) -> None:
        """Say QUIT on every idle connection and close it."""
        idle, self._idle = self._idle, []
        for client in idle:
            transport = client.transport
            if client.is_connected:
                try:
                    await client.quit(timeout=self._timeout_s)
                except (aiosmtplib.SMTPException, *_CONNECTION_ERRORS):
                    log.debug("QUIT failed on %s; closing anyway", self._where)
            _abort(client, transport)

    async def __aenter__(self) -> SmtpSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def _where(self) -> str:
        return f"{self._url.host}:{self._url.port}"

    def _bind_to_running_loop(self) -> None:
        """Connections belong to one event loop; a new loop starts with an empty pool."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        for client in self._idle:
            try:
                _abort(client)
            except RuntimeError:  # its loop is already closed
                log.debug("dropped an SMTP connection from a closed event loop")
        self._idle = []
        self._slots = asyncio.Semaphore(self._connections)
        self._loop = loop

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        """An open pooled connection, if any; closed ones are dropped."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
        return None

    def _release(self, client: aiosmtplib.SMTP) -> None:
        """Back to the pool after a refused message, unless the server hung up."""
        if client.is_connected:
            self._idle.append(client)

    def _discard(self, client: aiosmtplib.SMTP) -> None:
        """Drop a connection whose state is unknown."""
        _abort(client)

    async def _connect(self) -> aiosmtplib.SMTP:
        """A new connection: TLS, EHLO and AUTH as the URL says; failures are temporary."""
        url = self._url
        # STARTTLS and AUTH are done step by step rather than by connect(), so that a failure
        # leaves the transport in our hands to cut (see `_abort`).
        client = aiosmtplib.SMTP(
            hostname=url.host,
            port=url.port,
            local_hostname=url.helo,
            timeout=self._timeout_s,
            use_tls=url.tls is TlsMode.implicit,
            start_tls=False,
            validate_certs=url.verify,
            cert_bundle=url.cafile,
        )
        try:
            await client.connect()
            await client.ehlo()  # now, so that the SMTPUTF8 check sees the extensions
            if url.tls is TlsMode.starttls or (
                url.tls is TlsMode.opportunistic and client.supports_extension("starttls")
            ):
                await client.starttls()
                await client.ehlo()  # RFC 3207: forget what was said before TLS
            if url.username is not None:
                await client.login(url.username, url.password or "")
        except (aiosmtplib.SMTPException, *_CONNECTION_ERRORS) as exc:
            _abort(client)
            raise TemporaryDeliveryError(f"cannot use SMTP server {self._where}: {exc}") from exc
        self.connections_opened += 1
        return client


def _mail_options(client: aiosmtplib.SMTP, *, utf8: bool) -> list[str]:
    """MAIL FROM parameters: SMTPUTF8 (and 8BITMIME for its UTF-8 headers) when needed.

    The body is always 7-bit (quoted-printable parts), so plain messages need neither.
    """
    if not utf8:
        return []
    return ["SMTPUTF8", "BODY=8BITMIME"] if client.supports_extension("8bitmime") else ["SMTPUTF8"]


def _abort(client: aiosmtplib.SMTP, transport: asyncio.BaseTransport | None = None) -> None:
    """Cut a connection now, without waiting for anything from the server.

    A plain close of a TLS connection waits for the server's close_notify; if the event loop
    ends first, the socket is left open and Python warns about it when it is collected.
    """
    transport = transport or client.transport
    client.close()
    if transport is not None:
        transport.abort()  # type: ignore[attr-defined]


def _reply_error(exc: aiosmtplib.SMTPException) -> TemporaryDeliveryError | PermanentDeliveryError:
    """A refusal as the delivery error its reply code calls for, with the code and reply."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = f"{exc.code} {exc.message}"
        if 500 <= exc.code < 600:
            return PermanentDeliveryError(reply)
        return TemporaryDeliveryError(reply)
    # No reply code (e.g. a timeout): the message may yet go through.
    return TemporaryDeliveryError(str(exc) or type(exc).__name__)
