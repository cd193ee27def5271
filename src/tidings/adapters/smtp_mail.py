"""One SMTP mail transaction (MAIL, RCPT, DATA) for one recipient on an open aiosmtplib connection.

It says on the wire what aiosmtplib's `SMTP.sendmail` says for one recipient, and fails with
the same exceptions (`SMTPSenderRefused`, `SMTPRecipientsRefused`, `SMTPDataError`, after an
RSET as sendmail sends one; `SMTPServerDisconnected` for a lost connection,
`SMTPReadTimeoutError` for a reply later than the timeout). aiosmtplib keeps the connection,
TLS, STARTTLS, AUTH and that RSET; what it is left out of is the transaction itself, which
cost most of a send's CPU there: four parses of the two addresses by the email package's
address parser (a plain address, as the sender's envelope gives it, is quoted as is: a test
holds that to aiosmtplib's quoting), the EHLO checks (done at connect), the command lock (one
message at a time per connection), a regular expression pass over the message only to count
its size, and per reply a timer, two coroutines, a future and a wake-up of the sending task.
Here the connection's replies go, for the transaction's length, to `_MailExchange`, which
sends each command as the reply before it arrives, in the transport's own read callback; the
task wakes once, when the transaction is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    MAX_LINE_LENGTH,
    MAX_RESPONSE_LENGTH,
    PERIOD_REGEX,
    SMTPProtocol,
    normalize_message_line_endings,
)

# A bare `local@domain` of dot-atoms: the email package reads it back unchanged.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_OK = 250
_WILL_FORWARD = 251
_START_INPUT = 354
_UNAVAILABLE = 421  # "closing": aiosmtplib closes the connection on it, after some commands
_TIMED_OUT = "Timed out waiting for server response"  # aiosmtplib's words


def quoted(address: str) -> str:
    """`<address>` as aiosmtplib's `quote_address` gives it (ValueError if it cannot go)."""
    if _PLAIN.fullmatch(address) is not None:
        return f"<{address}>"
    return quote_address(address)


def wire_size(message: bytes) -> int:
    """The message's size as the DATA command sends it (RFC 1870), as sendmail counts it."""
    # Our messages are written with CRLF line ends, which the count shows without rewriting.
    if _crlf_only(message):
        return len(message) if message.endswith(b"\r\n") else len(message) + 2
    return len(normalize_message_line_endings(message))


def _crlf_only(message: bytes) -> bool:
    """Whether every line end is CRLF (no lone CR or LF for aiosmtplib to rewrite)."""
    return message.count(b"\n") == message.count(b"\r\n") == message.count(b"\r")


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
    Every command is checked for control characters before the first is sent (aiosmtplib
    checks each as it sends it: our envelope's addresses never have any).
    """
    utf8 = any(option.lower() == "smtputf8" for option in mail_options)
    encoding = "utf-8" if utf8 else "ascii"
    # Both addresses are checked before anything is sent, as sendmail checks them.
    from_arg = b"FROM:" + quoted(sender).encode(encoding)
    to_arg = b"TO:" + quoted(recipient).encode(encoding)
    options = mail_options
    if client.supports_extension("size"):
        options = [f"size={wire_size(message)}", *mail_options]
    mail = _command(b"MAIL", from_arg, *[option.encode("ascii") for option in options])
    steps = (
        _Step(mail, (_OK,), _sender_refused(sender), closes_if_unavailable=True),
        _Step(
            _command(b"RCPT", to_arg),
            (_OK, _WILL_FORWARD),
            _recipient_refused(recipient),
            closes_if_unavailable=True,
        ),
        _Step(b"DATA\r\n", (_START_INPUT,), _data_error),
        _Step(dot_terminated(message), (_OK,), _data_error),
    )
    exchange = _MailExchange.take_over(client, steps, timeout_s)
    try:
        await exchange.done
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        exchange.give_back()  # the RSET is aiosmtplib's, with the client's own timeout
        if exchange.unavailable:
            client.close()
        # Reset the envelope for the connection's next message, as sendmail does; if that
        # fails too (disconnected, an odd reply), the refusal is still what the caller needs.
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset()
        raise
    except aiosmtplib.SMTPServerDisconnected:
        client.close()
        raise
    finally:
        exchange.give_back()


@dataclass(frozen=True)
class _Step:
    """One command of the transaction: what is sent, the reply codes that go on, the error
    another reply ends the transaction with, and whether a 421 reply closes the connection
    (sendmail sends MAIL and RCPT through `execute_command`, which closes it on one; DATA
    and the content through its `data`, which does not)."""

    line: bytes
    accepted: tuple[int, ...]
    refusal: Callable[[aiosmtplib.SMTPResponse], aiosmtplib.SMTPException]
    closes_if_unavailable: bool = False


class _MailExchange(asyncio.Protocol):
    """The transaction's replies, read off the connection while it lasts: each reply accepted
    sends the next command, in the transport's read callback, and `done` ends with the last.

    aiosmtplib's protocol is given the transport back when the transaction ends; meanwhile
    what it must know (the connection lost, flow control) is passed on to it. One timer
    serves the four replies: each command moves the deadline, and the timer, when it fires
    before it, waits on to it. A reply late past its deadline cuts the connection and fails
    the transaction with aiosmtplib's timeout error.
    """

    def __init__(
        self,
        client: aiosmtplib.SMTP,
        origin: SMTPProtocol,
        transport: asyncio.Transport,
        steps: tuple[_Step, ...],
        timeout_s: float | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._client = client
        self._origin = origin
        self._transport = transport
        self._steps = steps
        self._next = 0
        self._buffer = bytearray()
        self._timeout_s = timeout_s
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._given_back = False
        self.done: asyncio.Future[None] = self._loop.create_future()
        self.unavailable = False  # a 421 reply to a command: aiosmtplib would close

    @classmethod
    def take_over(
        cls, client: aiosmtplib.SMTP, steps: tuple[_Step, ...], timeout_s: float | None
    ) -> _MailExchange:
        """Check the commands, take the client's transport and send the first command."""
        for step in steps[:-1]:  # the content is not a command (nor checked by aiosmtplib)
            if COMMAND_INJECTION_REGEX.search(step.line, 0, len(step.line) - 2):
                raise ValueError("Command arg contains a prohibited control character")
        origin = client.protocol
        transport = origin.transport if origin is not None else None
        if origin is None or transport is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        if transport.is_closing():
            client.close()
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        exchange = cls(client, origin, cast(asyncio.Transport, transport), steps, timeout_s)
        transport.set_protocol(exchange)
        exchange._send()
        return exchange

    def give_back(self) -> None:
        """The transport back to aiosmtplib's protocol, and no reply awaited any more."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._given_back:
            self._given_back = True
            self._transport.set_protocol(self._origin)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return  # nothing is awaited: aiosmtplib ignores such data too
        if not self._buffer and (reply := _one_line_reply(data)) is not None:
            self._answered(reply)
            return
        self._buffer += data
        if len(self._buffer) > MAX_RESPONSE_LENGTH:
            self._buffer.clear()
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
            return
        try:
            reply = _read_reply(self._buffer)
        except aiosmtplib.SMTPResponseException as exc:
            self._fail(exc)
            return
        if reply is not None:
            self._answered(reply)

    def eof_received(self) -> bool:
        self._origin.eof_received()
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._origin.connection_lost(exc)
        lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._fail(lost)

    def pause_writing(self) -> None:
        self._origin.pause_writing()

    def resume_writing(self) -> None:
        self._origin.resume_writing()

    def _answered(self, reply: aiosmtplib.SMTPResponse) -> None:
        step = self._steps[self._next]
        if reply.code == _UNAVAILABLE and step.closes_if_unavailable:
            self.unavailable = True
        if reply.code not in step.accepted:
            self._fail(step.refusal(reply))
            return
        self._next += 1
        if self._next == len(self._steps):
            self.give_back()
            self.done.set_result(None)
            return
        self._send()

    def _send(self) -> None:
        self._transport.write(self._steps[self._next].line)
        if self._timeout_s is None:
            return
        self._deadline = self._loop.time() + self._timeout_s
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check)

    def _fail(self, exc: BaseException) -> None:
        self._deadline = None
        if not self.done.done():
            self.done.set_exception(exc)

    def _check(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._loop.time() < self._deadline:  # a later reply's deadline
            self._timer = self._loop.call_at(self._deadline, self._check)
            return
        self._fail(aiosmtplib.SMTPReadTimeoutError(_TIMED_OUT))
        self._client.close()
        self._transport.abort()  # now: the server may still be busy with the message


def _one_line_reply(data: bytes) -> aiosmtplib.SMTPResponse | None:
    """The reply when `data` is exactly one well-formed last line, as nearly every reply to a
    mail transaction's command comes, read as `_read_reply` reads it but without a buffer;
    None for anything else, which `_read_reply` then reads."""
    if data.find(b"\n") != len(data) - 1 or data[3:4] == b"-" or len(data) > MAX_LINE_LENGTH:
        return None
    try:
        code = int(data[:3])
    except ValueError:
        return None
    return aiosmtplib.SMTPResponse(
        code, data[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape")
    )


def _read_reply(buffer: bytearray) -> aiosmtplib.SMTPResponse | None:
    """The first complete reply in `buffer`, taken out of it (None: not complete yet), read as
    aiosmtplib's protocol reads one: lines joined by a newline, each without its code and
    its blanks, the code of the last line; a malformed or too long line is an error."""
    code = -1
    text = bytearray()
    offset = 0
    while (end := buffer.find(b"\n", offset)) != -1:
        line = bytes(buffer[offset : end + 1])
        if len(line) > MAX_LINE_LENGTH:
            raise aiosmtplib.SMTPResponseException(-1, "Response too long")
        try:
            code = int(line[:3])
        except ValueError:
            shown = line.decode("utf-8", errors="ignore")
            raise aiosmtplib.SMTPResponseException(
                -1, f"Malformed SMTP response line: {shown}"
            ) from None
        offset += len(line)
        if text:
            text += b"\n"
        text += line[4:].strip(b" \t\r\n")
        if line[3:4] != b"-":
            del buffer[:offset]
            return aiosmtplib.SMTPResponse(code, bytes(text).decode("utf-8", "surrogateescape"))
    return None


def _command(*args: bytes) -> bytes:
    return b" ".join(args) + b"\r\n"


def _sender_refused(sender: str) -> Callable[[aiosmtplib.SMTPResponse], aiosmtplib.SMTPException]:
    def refused(reply: aiosmtplib.SMTPResponse) -> aiosmtplib.SMTPException:
        return aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)

    return refused


def _recipient_refused(
    recipient: str,
) -> Callable[[aiosmtplib.SMTPResponse], aiosmtplib.SMTPException]:
    def refused(reply: aiosmtplib.SMTPResponse) -> aiosmtplib.SMTPException:
        one = aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
        return aiosmtplib.SMTPRecipientsRefused([one])

    return refused


def _data_error(reply: aiosmtplib.SMTPResponse) -> aiosmtplib.SMTPException:
    return aiosmtplib.SMTPDataError(reply.code, reply.message)


def dot_terminated(message: bytes) -> bytes:
    """DATA's content: CRLF line ends, leading dots doubled, and the final dot line."""
    # Both rewrites are regular expression passes over the whole message; ours (CRLF, no line
    # starting with a dot) need neither, which counting shows for less.
    if not _crlf_only(message) or not message.endswith(b"\r\n"):
        message = normalize_message_line_endings(message)
    if message.startswith(b".") or b"\n." in message:
        message = PERIOD_REGEX.sub(b"..", message)
    return message + b".\r\n"
