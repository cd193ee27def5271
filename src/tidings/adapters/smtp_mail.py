"""One SMTP mail transaction (MAIL, RCPT, DATA) for one recipient on an open aiosmtplib connection.

It says on the wire what aiosmtplib's `SMTP.sendmail` says for one recipient, and fails with
the same exceptions (`SMTPSenderRefused`, `SMTPRecipientsRefused`, `SMTPDataError`, after an
RSET as sendmail sends one), through the same aiosmtplib commands, timeouts and connection
handling. What it leaves out is sendmail's work that does not apply to the sender's one
message on a connection it has to itself, which cost more than a third of a send's CPU: four
parses of the two addresses by the email package's address parser (a plain address, as the
sender's envelope gives it, is quoted as is: a test holds that to aiosmtplib's quoting), the
EHLO checks (done at connect), the sendmail lock (one message at a time per connection), and
a regular expression pass over the message only to count its size.
"""

from __future__ import annotations

import contextlib
import re

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import normalize_message_line_endings

# A bare `local@domain` of dot-atoms: the email package reads it back unchanged.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_OK = 250
_WILL_FORWARD = 251


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
) -> None:
    """MAIL FROM, RCPT TO and DATA for `message` on a connection past its EHLO.

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
    try:
        reply = await client.execute_command(
            b"MAIL", from_arg, *[option.encode("ascii") for option in options]
        )
        if reply.code != _OK:
            raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
        reply = await client.execute_command(b"RCPT", to_arg)
        if reply.code not in (_OK, _WILL_FORWARD):
            refused = aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
            raise aiosmtplib.SMTPRecipientsRefused([refused])
        await client.data(message)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        # Reset the envelope for the connection's next message, as sendmail does; if that
        # fails too (disconnected, an odd reply), the refusal is still what the caller needs.
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset()
        raise
