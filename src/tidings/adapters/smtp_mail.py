"""One SMTP mail transaction (MAIL, RCPT, DATA) for one recipient on an open aiosmtplib connection.

It says on the wire what aiosmtplib's `SMTP.sendmail` says for one recipient, and fails with
the same exceptions (`SMTPSenderRefused`, `SMTPRecipientsRefused`, `SMTPDataError`, after an
RSET as sendmail sends one; `SMTPReadTimeoutError` for a reply later than the timeout),
through aiosmtplib's own commands and connection handling. What it leaves out is sendmail's
work that does not apply to the sender's one message on a connection it has to itself, which
cost more than a fifth of a send's CPU: four parses of the two addresses by the email
package's address parser (a plain address, as the sender's envelope gives it, is quoted as
is: a test holds that to aiosmtplib's quoting), the EHLO checks (done at connect), the
sendmail lock (one message at a time per connection), a regular expression pass over the
message only to count its size, and a timer with its future and callbacks per reply (one
timer serves the four replies, see `_Replies`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

# A bare `local@domain` of dot-atoms: the email package reads it back unchanged.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_OK = 250
_WILL_FORWARD = 251
_START_INPUT = 354
_TIMED_OUT = "Timed out waiting for server response"  # aiosmtplib's words


def quoted(address: str) -> str:
    """`<address>` as aiosmtplib's `quote_address` gives it (ValueError if it cannot go)."""
    if _PLAIN.fullmatch(address) is not None:
        return f"<{address}>"
    return quote_address(address)


def wire_size(message: bytes) -> int:
    """The message's size as the DATA command sends it (RFC 1870), as sendmail counts it."""
    # Our messages are written with CRLF line ends, which the count shows without rewriting.
    crlf = message.count(b"\r\n")
    if message.count(b"\n") == crlf == message.count(b"\r"):
        return len(message) if message.endswith(b"\r\n") else len(message) + 2
    return len(normalize_message_line_endings(message))


async def send_mail(
    client: aiosmtplib.SMTP,
    sender: str,
    recipient: str,
    message: bytes,
    *,
    mail_options: list[str],
    timeout_s: float | None,
) -> None:
    """MAIL FROM, RCPT TO and DATA for `message` on a connection past its EHLO, each reply
    awaited at most `timeout_s` (None: for ever), as the client's own timeout would.

    `mail_options` with SMTPUTF8 sends the addresses as UTF-8 (else ASCII), as sendmail does.
    """
    utf8 = any(option.lower() == "smtputf8" for option in mail_options)
    encoding = "utf-8" if utf8 else "ascii"
    # Both addresses are checked before anything is sent, as sendmail checks them.
    from_arg = b"FROM:" + quoted(sender).encode(encoding)
    to_arg = b"TO:" + quoted(recipient).encode(encoding)
    options = mail_options
    if client.supports_extension("size"):
        options = [f"size={wire_size(message)}", *mail_options]
    replies = _Replies(client, timeout_s)
    try:
        reply = await replies.command(
            b"MAIL", from_arg, *[option.encode("ascii") for option in options]
        )
        if reply.code != _OK:
            raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
        reply = await replies.command(b"RCPT", to_arg)
        if reply.code not in (_OK, _WILL_FORWARD):
            refused = aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
            raise aiosmtplib.SMTPRecipientsRefused([refused])
        reply = await replies.command(b"DATA")
        if reply.code != _START_INPUT:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        reply = await replies.content(message)
        if reply.code != _OK:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        replies.stop()  # the RSET has the client's own timeout
        # Reset the envelope for the connection's next message, as sendmail does; if that
        # fails too (disconnected, an odd reply), the refusal is still what the caller needs.
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset()
        raise
    except aiosmtplib.SMTPServerDisconnected as exc:
        if replies.expired:
            raise aiosmtplib.SMTPReadTimeoutError(_TIMED_OUT) from exc
        raise
    finally:
        replies.stop()


class _Replies:
    """The replies of one mail transaction, each awaited under one deadline timer.

    aiosmtplib times each reply out with `asyncio.wait_for` (a timer, a future and callbacks
    per reply, a tenth of a send's CPU); here one timer serves the transaction's four replies:
    each command moves the deadline, and the timer, when it fires before it, waits on to it.
    A reply late past its deadline cuts the connection, which ends the wait for it; the
    transaction then fails with aiosmtplib's timeout error, as wait_for would have.
    """

    def __init__(self, client: aiosmtplib.SMTP, timeout_s: float | None) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False

    async def command(self, *args: bytes) -> aiosmtplib.SMTPResponse:
        """One command and its reply (aiosmtplib closes the connection if it is lost)."""
        self._start()
        return await self._client.execute_command(*args, timeout=None)

    async def content(self, message: bytes) -> aiosmtplib.SMTPResponse:
        """The message after DATA's 354 and its reply, as aiosmtplib's data() sends it."""
        self._start()
        protocol = self._client.protocol
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            protocol.write(_dot_terminated(message))
            return await protocol.read_response(timeout=None)
        except aiosmtplib.SMTPServerDisconnected:
            self._client.close()
            raise

    def stop(self) -> None:
        """No reply is awaited any more."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start(self) -> None:
        if self._timeout_s is None:
            return
        self._deadline = self._loop.time() + self._timeout_s
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._loop.time() < self._deadline:  # a later reply's deadline
            self._timer = self._loop.call_at(self._deadline, self._check)
            return
        self.expired = True
        transport = self._client.transport
        self._client.close()
        if transport is not None:
            transport.abort()  # type: ignore[attr-defined]  # now: the wait ends with it


def _dot_terminated(message: bytes) -> bytes:
    """DATA's content: CRLF line ends, leading dots doubled, and the final dot line."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
