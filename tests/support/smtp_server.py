"""A real SMTP server (aiosmtpd) on 127.0.0.1 for tests: records what it receives.

It can refuse chosen recipients with any reply (4xx or 5xx, a number of times or always),
never answer for them (`hang`) or cut the connection when they come up (`drop`),
require a login, speak STARTTLS or implicit TLS, advertise SMTPUTF8 or not, and be stopped and
started again on the same port to play an outage.

Why not aiosmtpd's threaded `Controller`: it cannot take port 0 (its start-up "trigger"
connection dials the port it was given, so a free port must be guessed beforehand, a race),
that trigger connection would count as a client session, and its `stop()` cancels the session
tasks where an outage test wants every connection cut at once. Checked under `-W error`, Controller
itself raised no warning; the ResourceWarnings met while writing these tests came from the
client side (a TLS connection closed politely as the event loop ended, see
`tidings.adapters.smtp._abort`). This server runs the same `SMTP` protocol in its own loop and
thread, listens on port 0 then keeps that port across restarts, and on stop aborts every open
connection (as a crashed server would) and lets every task end before it closes the loop, so
nothing is left for the collector to warn about.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_string, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
HANG = "(no answer)"  # a refusal "reply" that never comes
DROP = "(connection cut)"  # a refusal "reply" that cuts the connection instead
HOLD_TIMEOUT_S = 10.0  # how long `hold` keeps a reply at most


@dataclass(frozen=True)
class Received:
    """One message as the server accepted it."""

    session: int  # which connection carried it, counting from 1
    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    smtp_utf8: bool
    login: str | None
    data: bytes

    def message(self) -> EmailMessage:
        """The message parsed as a mail client would, UTF-8 headers (RFC 6532) included."""
        # The bytes parser would turn raw UTF-8 in headers into surrogate escapes.
        text = self.data.decode("utf-8")
        return message_from_string(text, policy=policy.default)


@dataclass
class _Refusal:
    reply: str
    times: int | None  # None: always


@dataclass
class _State:
    """What the handler records; touched from the server thread, read from the test's."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    refusals: dict[str, _Refusal] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    holds: dict[str, str] = field(default_factory=dict)  # held RCPT -> the one that frees it
    arrived: dict[str, asyncio.Event] = field(default_factory=dict)  # in the server's loop
    sessions: int = 0
    logins: dict[int, str] = field(default_factory=dict)


class _Handler:
    """aiosmtpd hooks: refuse what the test asked, record the rest."""

    def __init__(self, state: _State) -> None:
        self.state = state

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        with self.state.lock:
            refusal = self.state.refusals.get(address.lower())
            if refusal is not None and refusal.times != 0:
                if refusal.times is not None:
                    refusal.times -= 1
                self.state.refused.append((address, refusal.reply))
                reply = refusal.reply
            else:
                reply = ""
        with self.state.lock:
            until = self.state.holds.get(address.lower())
        if until is not None:
            # Bounded, so that a client that never sends `until` fails its test, not hangs it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival(until).wait(), HOLD_TIMEOUT_S)
        if reply in (HANG, DROP):
            if reply == DROP:
                assert server.transport is not None
                server.transport.abort()  # type: ignore[attr-defined]
            # Wait for ever: the session task is cancelled when the connection goes.
            await asyncio.Event().wait()
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        number = _session_number(session)
        content = envelope.original_content or b""
        with self.state.lock:
            self.state.received.append(
                Received(
                    session=number,
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    mail_options=tuple(envelope.mail_options),
                    smtp_utf8=envelope.smtp_utf8,
                    login=self.state.logins.get(number),
                    data=content,
                )
            )
            count = len(self.state.received)
        for rcpt in envelope.rcpt_tos:
            self._arrival(rcpt).set()
        return f"250 2.0.0 Ok: queued as {count}"

    def _arrival(self, address: str) -> asyncio.Event:
        """Set once a message to `address` is accepted (only the server's loop touches it)."""
        return self.state.arrived.setdefault(address.lower(), asyncio.Event())


def _session_number(session: Session) -> int:
    return int(getattr(session, "tidings_number", 0))


class SmtpTestServer:
    """An SMTP server on loopback, in a thread, recording every message it accepts."""

    def __init__(
        self,
        *,
        smtputf8: bool = True,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.host = HOST
        self.port = port
        self._smtputf8 = smtputf8
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self._credentials = credentials
        self._state = _State()
        self._handler = _Handler(self._state)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []
        self._error: BaseException | None = None

    # What the test reads.

    @property
    def received(self) -> list[Received]:
        """Every accepted message, in order."""
        with self._state.lock:
            return list(self._state.received)

    @property
    def refused(self) -> list[tuple[str, str]]:
        """Every (recipient, reply) refused so far."""
        with self._state.lock:
            return list(self._state.refused)

    @property
    def sessions(self) -> int:
        """How many connections clients have opened, across restarts."""
        with self._state.lock:
            return self._state.sessions

    def hang(self, address: str) -> None:
        """Never answer RCPT TO:<address>: the client's command timeout has to act."""
        self.refuse(address, HANG)

    def drop(self, address: str) -> None:
        """Cut the connection when RCPT TO:<address> comes, without a reply."""
        self.refuse(address, DROP)

    def hold(self, address: str, *, until: str) -> None:
        """Answer RCPT TO:<address> only once a message to `until` has been accepted.

        So a test can keep one send in flight until another has gone through, without a
        sleep; after HOLD_TIMEOUT_S the reply comes anyway and the test's order check fails.
        """
        with self._state.lock:
            self._state.holds[address.lower()] = until

    def refuse(self, address: str, reply: str, *, times: int | None = None) -> None:
        """Answer RCPT TO:<address> with `reply` (e.g. "550 5.1.1 no such user")."""
        with self._state.lock:
            self._state.refusals[address.lower()] = _Refusal(reply, times)

    # Lifecycle.

    def start(self) -> SmtpTestServer:
        """Listen on the port (a free one the first time, the same one after a stop)."""
        if self._thread is not None:
            raise RuntimeError("SMTP test server already running")
        self._loop = asyncio.new_event_loop()
        self._error = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30):
            raise RuntimeError("SMTP test server did not start")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a crashed server would."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # The server thread.

    def _factory(self) -> SMTP:
        assert self._loop is not None
        kwargs: dict[str, Any] = {}
        if self._credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        with self._state.lock:
            self._state.sessions += 1
            number = self._state.sessions
        protocol = _NumberedSMTP(
            number,
            self._handler,
            hostname="tidings-test-server",
            enable_SMTPUTF8=self._smtputf8,
            decode_data=False,
            tls_context=self._starttls,
            loop=self._loop,
            **kwargs,
        )
        self._protocols.append(protocol)
        return protocol

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self._credentials is not None
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        ok = (login, auth_data.password.decode()) == self._credentials
        if ok:
            with self._state.lock:
                self._state.logins[_session_number(session)] = login
        return AuthResult(success=ok, handled=False)

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                loop.create_server(
                    self._factory,
                    self.host,
                    self.port,
                    ssl=self._implicit_tls,
                    reuse_address=True,
                )
            )
        except BaseException as exc:
            self._error = exc
            loop.close()
            ready.set()
            return
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown(server))
            loop.close()

    async def _shutdown(self, server: asyncio.Server) -> None:
        """Close the listener, cut every connection and let every task end."""
        server.close()
        for protocol in self._protocols:
            # After STARTTLS the protocol holds the TLS layer and the socket under it.
            for transport in (protocol.transport, protocol._original_transport):
                if transport is not None:
                    transport.abort()  # type: ignore[attr-defined]
        self._protocols.clear()
        await server.wait_closed()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_asyncgens()


class _NumberedSMTP(SMTP):
    """aiosmtpd's SMTP protocol for one connection, stamping its number on each session.

    STARTTLS starts a new session on the same connection, so the number belongs to the
    connection (counted in the factory), not to the session.
    """

    def __init__(self, number: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._number = number

    def _create_session(self) -> Session:
        session = super()._create_session()
        session.tidings_number = self._number  # type: ignore[attr-defined]
        return session
