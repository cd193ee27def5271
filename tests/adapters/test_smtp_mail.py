"""The sender's own mail transaction says on the wire what aiosmtplib's sendmail says."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import aiosmtplib
import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from support.smtp_server import Received, SmtpTestServer
from tidings.adapters.smtp_mail import dot_terminated, quoted, send_mail, wire_size

ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=8)
labels = st.text(alphabet="abzAZ09-", min_size=1, max_size=8)
plain_addresses = st.builds(
    lambda local, domain: f"{'.'.join(local)}@{'.'.join(domain)}",
    st.lists(atoms, min_size=1, max_size=3),
    st.lists(labels, min_size=1, max_size=3),
)
odd_addresses = st.one_of(
    plain_addresses,
    st.text(alphabet='a@."<> \\()[],;:\r\n\x00ü', max_size=16),
    st.builds(lambda a, b: f'"{a}"@{b}', st.text(alphabet='a "\\.@', max_size=6), labels),
)


def quoted_by_aiosmtplib(address: str) -> str | type[ValueError]:
    try:
        return quote_address(address)
    except ValueError:
        return ValueError


def quoted_here(address: str) -> str | type[ValueError]:
    try:
        return quoted(address)
    except ValueError:
        return ValueError


@settings(max_examples=300)
@given(plain_addresses)
def test_a_plain_address_is_quoted_as_aiosmtplib_quotes_it(address: str) -> None:
    assert quoted(address) == quote_address(address) == f"<{address}>"


@settings(max_examples=300)
@given(odd_addresses)
def test_any_address_is_quoted_or_refused_as_aiosmtplib_does(address: str) -> None:
    assert quoted_here(address) == quoted_by_aiosmtplib(address)


@settings(max_examples=300)
@given(
    st.binary(max_size=40)
    | st.lists(st.sampled_from([b"a", b"\r\n", b"\r", b"\n", b"."])).map(b"".join)
)
def test_the_size_is_counted_as_sendmail_counts_it(message: bytes) -> None:
    assert wire_size(message) == len(normalize_message_line_endings(message))


@settings(max_examples=300)
@given(
    st.binary(max_size=40)
    | st.lists(st.sampled_from([b"a", b"\r\n", b"\r", b"\n", b"."])).map(b"".join)
)
def test_the_content_is_sent_as_sendmail_sends_it(message: bytes) -> None:
    sent_by_aiosmtplib = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message))
    assert dot_terminated(message) == sent_by_aiosmtplib + b".\r\n"


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as running:
        yield running


MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\n.dot first\r\nbye\r\n"
Send = Callable[[aiosmtplib.SMTP, str, str, bytes, list[str]], Awaitable[object]]


async def by_sendmail(
    client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes, options: list[str]
) -> object:
    return await client.sendmail(sender, [recipient], data, mail_options=options)


async def by_send_mail(
    client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes, options: list[str]
) -> object:
    return await send_mail(
        client, sender, recipient, data, mail_options=options, timeout_s=client.timeout
    )


def deliver(
    server: SmtpTestServer, send: Send, mails: list[tuple[str, bytes, list[str]]]
) -> list[object]:
    """Each (recipient, data, options) on one connection; what each send returned or raised."""

    async def scenario() -> list[object]:
        client = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False)
        await client.connect()
        await client.ehlo()
        results: list[object] = []
        for recipient, data, options in mails:
            try:
                await send(client, "news@example.com", recipient, data, options)
                results.append("sent")
            except aiosmtplib.SMTPException as exc:
                results.append((type(exc), str(exc)))
        await client.quit()
        return results

    return asyncio.run(scenario())


def received_without_session(server: SmtpTestServer) -> list[Received]:
    return [
        Received(0, r.mail_from, r.rcpt_tos, r.mail_options, r.smtp_utf8, r.login, r.data)
        for r in server.received
    ]


@pytest.mark.parametrize(
    "mails",
    [
        [("user@example.org", MESSAGE, [])],
        [("jürgen@example.org", MESSAGE, ["SMTPUTF8", "BODY=8BITMIME"])],
        [("user@example.org", b"no line end\nat the end\r", [])],
        [("refused@example.org", MESSAGE, []), ("user@example.org", MESSAGE, [])],
        [("busy@example.org", MESSAGE, []), ("user@example.org", MESSAGE, [])],
    ],
)
def test_the_server_sees_and_answers_what_sendmail_would_get(
    mails: list[tuple[str, bytes, list[str]]],
) -> None:
    outcomes = []
    for send in (by_sendmail, by_send_mail):
        with SmtpTestServer() as server:
            server.refuse("refused@example.org", "550 5.1.1 no such user")
            server.refuse("busy@example.org", "451 4.3.0 try later")
            results = deliver(server, send, mails)
            outcomes.append((results, received_without_session(server), server.refused))
    assert outcomes[1] == outcomes[0]
    results, received, _ = outcomes[1]
    assert "sent" in results and received  # the connection carried on after a refusal
    if mails[0][2] == []:
        assert received[-1].mail_options[0].startswith("SIZE=")


# Reply timeouts: one deadline per transaction, moved by each command.


class SlowServer:
    """An SMTP server that answers each command (by its first word, b"." for the content)
    after the given delay, and at once otherwise."""

    def __init__(self, delays: dict[bytes, float]) -> None:
        self.delays = delays
        self.sessions: list[asyncio.Task[None]] = []

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions.append(asyncio.current_task())  # type: ignore[arg-type]
        answers = {b"EHLO": b"250 slow", b"DATA": b"354 go on", b"QUIT": b"221 bye"}
        try:
            writer.write(b"220 slow ready\r\n")
            in_data = False
            while line := await reader.readline():
                if in_data and line != b".\r\n":
                    continue
                word = b"." if in_data else line.split()[0].upper()
                await asyncio.sleep(self.delays.get(word, 0))
                writer.write(answers.get(word, b"250 ok") + b"\r\n")
                in_data = word == b"DATA"
        finally:
            writer.close()

    async def stop(self, server: asyncio.Server) -> None:
        server.close()
        for task in self.sessions:
            task.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)


def send_slowly(delays: dict[bytes, float], timeout_s: float) -> tuple[object, bool]:
    """One message to a slow server: what the send gave, and whether the client is still
    connected after it."""

    async def scenario() -> tuple[object, bool]:
        slow = SlowServer(delays)
        server = await asyncio.start_server(slow.session, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        await client.ehlo()
        try:
            await send_mail(
                client,
                "a@example.org",
                "b@example.org",
                MESSAGE,
                mail_options=[],
                timeout_s=timeout_s,
            )
            result: object = "sent"
        except aiosmtplib.SMTPException as exc:
            result = (type(exc), str(exc))
        connected = client.is_connected
        client.close()
        await slow.stop(server)
        return result, connected

    return asyncio.run(scenario())


def test_replies_each_in_time_add_up_past_the_timeout_and_still_go() -> None:
    steps = {b"MAIL": 0.15, b"RCPT": 0.15, b"DATA": 0.15, b".": 0.15}
    assert send_slowly(steps, timeout_s=0.25) == ("sent", True)


@pytest.mark.parametrize("late", [b"MAIL", b"RCPT", b"DATA", b"."])
def test_a_reply_later_than_the_timeout_fails_as_aiosmtplib_times_out(late: bytes) -> None:
    result, connected = send_slowly({late: 1.0}, timeout_s=0.2)
    assert result == (aiosmtplib.SMTPReadTimeoutError, "Timed out waiting for server response")
    assert not connected


# Odd replies: sendmail and send_mail read them alike, and leave the connection alike.

CLOSE = b""  # the server hangs up instead of answering


class ScriptedServer:
    """An SMTP server that answers each command (by its first word, b"." for the content)
    with the bytes given, written in the chunks given (a short pause between them), and
    `250 ok` otherwise; CLOSE hangs up instead."""

    def __init__(self, answers: dict[bytes, list[bytes]]) -> None:
        self.answers = answers
        self.sessions: list[asyncio.Task[None]] = []

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions.append(asyncio.current_task())  # type: ignore[arg-type]
        defaults = {b"EHLO": [b"250-scripted\r\n250 SIZE 1000000\r\n"], b"DATA": [b"354 go\r\n"]}
        try:
            writer.write(b"220 scripted ready\r\n")
            in_data = False
            while line := await reader.readline():
                if in_data and line != b".\r\n":
                    continue
                word = b"." if in_data else line.split()[0].upper()
                chunks = self.answers.get(word) or defaults.get(word) or [b"250 ok\r\n"]
                if chunks == [CLOSE]:
                    break
                for n, chunk in enumerate(chunks):
                    if n:
                        await writer.drain()
                        await asyncio.sleep(0.02)
                    writer.write(chunk)
                in_data = word == b"DATA" and chunks[-1].startswith(b"354")
        finally:
            writer.close()

    async def stop(self, server: asyncio.Server) -> None:
        server.close()
        for task in self.sessions:
            task.cancel()
        await asyncio.gather(*self.sessions, return_exceptions=True)


def send_to_scripted(send: Send, answers: dict[bytes, list[bytes]]) -> tuple[object, bool]:
    """One message to a scripted server: what the send gave, and whether the client is still
    connected after it."""

    async def scenario() -> tuple[object, bool]:
        scripted = ScriptedServer(answers)
        server = await asyncio.start_server(scripted.session, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
        await client.connect()
        await client.ehlo()
        try:
            await send(client, "a@example.org", "b@example.org", MESSAGE, [])
            result: object = "sent"
        except aiosmtplib.SMTPException as exc:
            result = (type(exc), str(exc))
        connected = client.is_connected
        client.close()
        await scripted.stop(server)
        return result, connected

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "answers",
    [
        {b"MAIL": [b"250-first line\r\n250-\r\n250 last line\r\n"]},
        {b"RCPT": [b"25", b"0 in two pieces\r\n"]},
        {b"MAIL": [b"250-one\r\n", b"250 two\r\n"]},
        {b"MAIL": [b"421 4.3.2 closing\r\n"]},
        {b"RCPT": [b"421 4.3.2 closing\r\n"]},
        {b"DATA": [b"421 4.3.2 closing\r\n"]},
        {b".": [b"421 4.3.2 closing\r\n"]},
        {b"RCPT": [b"553-5.1.3 bad\r\n553 5.1.3 address\r\n"]},
        {b"DATA": [b"xyz what\r\n"]},
        {b".": [b"552 5.3.4 too big\r\n"]},
        {b"MAIL": [CLOSE]},
        {b"RCPT": [CLOSE]},
        {b".": [CLOSE]},
        {b"MAIL": [b"250 " + b"x" * 9000 + b"\r\n"]},
    ],
)
def test_odd_replies_end_as_sendmail_ends(answers: dict[bytes, list[bytes]]) -> None:
    assert send_to_scripted(by_send_mail, answers) == send_to_scripted(by_sendmail, answers)
