"""SmtpSender against a real SMTP server on loopback: what arrives, refusals, TLS, pooling."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.messages import make_message
from support.smtp_server import SmtpTestServer
from tidings.adapters.smtp import SmtpSender
from tidings.adapters.smtp_url import SmtpUrl, TlsMode, parse_smtp_url
from tidings.errors import ConfigError, PermanentDeliveryError, TemporaryDeliveryError
from tidings.model.messages import Message


@pytest.fixture
def server() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as running:
        yield running


def url_for(server: SmtpTestServer, options: str = "", userinfo: str = "") -> SmtpUrl:
    sep = "&" if options else ""
    return parse_smtp_url(
        f"smtp://{userinfo}{server.host}:{server.port}?helo=client.test{sep}{options}"
    )


def send_all(sender: SmtpSender, messages: list[Message]) -> list[str | BaseException]:
    """Send concurrently in one event loop, close the pool, return ids or errors in order."""

    async def scenario() -> list[str | BaseException]:
        async with sender:
            return await asyncio.gather(
                *(sender.send_email(m) for m in messages), return_exceptions=True
            )

    return asyncio.run(scenario())


# The URL.


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpUrl("mail.example.com", 25)),
        ("smtp://mail.example.com:2525", SmtpUrl("mail.example.com", 2525)),
        (
            "smtps://me%40ex.com:p%3Ass@mail.example.com",
            SmtpUrl("mail.example.com", 465, TlsMode.implicit, "me@ex.com", "p:ss"),
        ),
        (
            "smtp://u:pw@relay?starttls=true&timeout=7.5",
            SmtpUrl("relay", 587, TlsMode.starttls, "u", "pw", timeout_s=7.5),
        ),
        ("smtp://relay:25?starttls=false", SmtpUrl("relay", 25, TlsMode.none)),
        ("smtp://relay?starttls=auto&verify=false", SmtpUrl("relay", 25, verify=False)),
        (
            "smtp://relay?cafile=/etc/ca.pem&helo=app.example.com",
            SmtpUrl("relay", 25, cafile="/etc/ca.pem", helo="app.example.com"),
        ),
    ],
)
def test_smtp_urls_parse_into_their_parts(url: str, expected: SmtpUrl) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://relay", "scheme must be smtp:// or smtps://"),
        ("smtp://", "no host"),
        ("smtp://relay/inbox", "unexpected path"),
        ("smtp://relay?tls=yes", "unknown option(s) tls"),
        ("smtp://relay?timeout=0", "timeout must be a positive number"),
        ("smtp://relay?timeout=soon", "timeout must be a positive number"),
        ("smtp://relay?starttls=maybe", "starttls must be true or false"),
        ("smtps://relay?starttls=true", "smtps:// is already TLS"),
        ("smtp://u:hunter2@relay:port", "Port could not be cast"),
    ],
)
def test_unusable_smtp_urls_are_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match="SMTP URL") as caught:
        parse_smtp_url(url)

    assert reason in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_the_password_never_shows_in_the_url_or_the_sender() -> None:
    url = parse_smtp_url("smtp://mailer:s3cr%21t@relay.example.com?starttls=true&timeout=5")

    assert url.password == "s3cr!t"
    for shown in (str(url), repr(url), repr(SmtpSender(url)), url.redacted()):
        assert "s3cr" not in shown
    assert str(url) == "smtp://mailer:***@relay.example.com:587?starttls=true&timeout=5"


# What the server receives.


def test_the_server_receives_headers_and_both_parts(server: SmtpTestServer) -> None:
    message = make_message(
        sender="Zoë Ünïcode <news@example.com>",
        to="Jürgen Groß <jurgen@example.org>",
        subject="Grüße — 日本語",
        text="Hallo Jürgen\n",
        html="<p>Hallo <b>Jürgen</b></p>\n",
    )

    assert send_all(SmtpSender(url_for(server)), [message]) == ["<run-1.0@tidings>"]

    [got] = server.received
    assert (got.mail_from, got.rcpt_tos) == ("news@example.com", ("jurgen@example.org",))
    mail = got.message()
    assert mail["From"].addresses[0].display_name == "Zoë Ünïcode"
    assert mail["To"].addresses[0].display_name == "Jürgen Groß"
    assert mail["Subject"] == "Grüße — 日本語"
    assert mail["Message-ID"] == "<run-1.0@tidings>"
    assert mail["Auto-Submitted"] == "auto-generated"
    parts = {p.get_content_type(): p.get_content().replace("\r\n", "\n") for p in mail.iter_parts()}
    assert parts == {"text/plain": "Hallo Jürgen\n", "text/html": "<p>Hallo <b>Jürgen</b></p>\n"}


def test_unsubscribe_link_and_default_sender_come_from_the_sender(server: SmtpTestServer) -> None:
    sender = SmtpSender(
        url_for(server),
        mail_from="Shop <shop@example.com>",
        unsubscribe_url=lambda m: f"https://t.example/u/{m.contact_id}",
    )

    send_all(sender, [make_message(sender=None)])

    mail = server.received[0].message()
    assert mail["From"] == "Shop <shop@example.com>"
    assert mail["List-Unsubscribe"] == "<https://t.example/u/contact-1>"


def test_a_resent_message_carries_the_same_message_id(server: SmtpTestServer) -> None:
    message = make_message()

    send_all(SmtpSender(url_for(server)), [message])
    send_all(SmtpSender(url_for(server)), [message])

    ids = [r.message()["Message-ID"] for r in server.received]
    assert ids == ["<run-1.0@tidings>", "<run-1.0@tidings>"]
    assert server.received[0].data == server.received[1].data


def test_an_internationalised_domain_is_sent_as_punycode(server: SmtpTestServer) -> None:
    send_all(SmtpSender(url_for(server)), [make_message(to="ana@exämple.org")])

    assert server.received[0].rcpt_tos == ("ana@xn--exmple-cua.org",)
    assert not server.received[0].smtp_utf8


# Refusals.


def test_a_4xx_reply_is_temporary_and_names_the_reply(server: SmtpTestServer) -> None:
    server.refuse("user1@example.org", "450 4.2.1 Mailbox busy, try later")

    [result] = send_all(SmtpSender(url_for(server)), [make_message(1)])

    assert isinstance(result, TemporaryDeliveryError)
    assert str(result) == "450 4.2.1 Mailbox busy, try later"
    assert server.received == []


def test_a_5xx_reply_is_permanent_and_other_recipients_still_get_theirs(
    server: SmtpTestServer,
) -> None:
    server.refuse("user2@example.org", "550 5.1.1 <user2@example.org>: no such user")
    messages = [make_message(n) for n in range(1, 6)]

    results = send_all(SmtpSender(url_for(server), connections=1), messages)

    assert isinstance(results[1], PermanentDeliveryError)
    assert str(results[1]) == "550 5.1.1 <user2@example.org>: no such user"
    assert [r for i, r in enumerate(results) if i != 1] == [
        "<run-1.0@tidings>",
        "<run-3.0@tidings>",
        "<run-4.0@tidings>",
        "<run-5.0@tidings>",
    ]
    assert sorted(r.rcpt_tos[0] for r in server.received) == [
        "user1@example.org",
        "user3@example.org",
        "user4@example.org",
        "user5@example.org",
    ]
    assert server.sessions == 1  # the refusal did not cost the connection


# SMTPUTF8.


def test_a_non_ascii_mailbox_goes_with_smtputf8_when_offered(server: SmtpTestServer) -> None:
    send_all(SmtpSender(url_for(server)), [make_message(to="Jürgen <jürgen@example.org>")])

    [got] = server.received
    assert got.smtp_utf8
    assert got.rcpt_tos == ("jürgen@example.org",)
    assert got.message()["To"].addresses[0].addr_spec == "jürgen@example.org"


def test_a_non_ascii_mailbox_fails_clearly_without_smtputf8() -> None:
    with SmtpTestServer(smtputf8=False) as server:
        results = send_all(
            SmtpSender(url_for(server)),
            [make_message(1, to="jürgen@example.org"), make_message(2)],
        )

    assert isinstance(results[0], PermanentDeliveryError)
    assert str(results[0]) == (
        "jürgen@example.org: address needs SMTPUTF8, which the server does not offer"
    )
    assert results[1] == "<run-2.0@tidings>"
    assert [r.rcpt_tos for r in server.received] == [("user2@example.org",)]
    assert not server.received[0].smtp_utf8


# Connections.


def test_connections_are_reused_across_messages(server: SmtpTestServer) -> None:
    sender = SmtpSender(url_for(server), connections=2)

    results = send_all(sender, [make_message(n) for n in range(12)])

    assert all(isinstance(r, str) for r in results)
    assert len(server.received) == 12
    assert 1 <= server.sessions <= 2
    assert sender.connections_opened == server.sessions


def test_a_connection_lost_while_idle_is_replaced(server: SmtpTestServer) -> None:
    sender = SmtpSender(url_for(server), connections=1)

    async def scenario() -> list[str]:
        async with sender:
            first = await sender.send_email(make_message(1))
            server.stop()  # cuts the pooled connection
            server.start()
            second = await sender.send_email(make_message(2))
            return [first, second]

    assert asyncio.run(scenario()) == ["<run-1.0@tidings>", "<run-2.0@tidings>"]
    assert server.sessions == 2
    assert len(server.received) == 2


def test_a_server_that_is_down_is_a_temporary_failure(server: SmtpTestServer) -> None:
    server.stop()

    [result] = send_all(SmtpSender(url_for(server)), [make_message()])

    assert isinstance(result, TemporaryDeliveryError)
    assert f"127.0.0.1:{server.port}" in str(result)


def test_a_server_that_never_answers_times_out_as_temporary() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        url = parse_smtp_url(f"smtp://127.0.0.1:{port}?helo=client.test&timeout=0.2")

        [result] = send_all(SmtpSender(url), [make_message()])

    assert isinstance(result, TemporaryDeliveryError)
    assert "timed out" in str(result).lower()


# TLS and login.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


def test_starttls_and_login_from_the_url(certificate: tuple[Path, Path]) -> None:
    tls = server_tls(certificate)
    with SmtpTestServer(starttls=tls, credentials=("mailer", "p@ss w0rd")) as server:
        url = url_for(server, f"starttls=true&cafile={certificate[0]}", "mailer:p%40ss%20w0rd@")

        assert send_all(SmtpSender(url), [make_message()]) == ["<run-1.0@tidings>"]

    assert server.received[0].login == "mailer"


def test_implicit_tls_with_smtps(certificate: tuple[Path, Path]) -> None:
    with SmtpTestServer(implicit_tls=server_tls(certificate)) as server:
        url = parse_smtp_url(
            f"smtps://{server.host}:{server.port}?helo=client.test&cafile={certificate[0]}"
        )

        assert send_all(SmtpSender(url), [make_message()]) == ["<run-1.0@tidings>"]

    assert len(server.received) == 1


def test_a_wrong_password_is_temporary_and_not_repeated(certificate: tuple[Path, Path]) -> None:
    tls = server_tls(certificate)
    with SmtpTestServer(starttls=tls, credentials=("mailer", "right")) as server:
        url = url_for(server, f"starttls=true&cafile={certificate[0]}", "mailer:wrong-pw@")

        [result] = send_all(SmtpSender(url), [make_message()])

    assert isinstance(result, TemporaryDeliveryError)
    assert "535" in str(result)
    assert "wrong-pw" not in str(result)
    assert server.received == []


def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    with SmtpTestServer(starttls=server_tls(certificate)) as server:
        [result] = send_all(SmtpSender(url_for(server, "starttls=true")), [make_message()])

    assert isinstance(result, TemporaryDeliveryError)
    assert "certificate" in str(result).lower()
    assert server.received == []


# A server that misbehaves mid-message.


def test_a_reply_that_never_comes_times_out_and_the_connection_is_dropped(
    server: SmtpTestServer,
) -> None:
    server.hang("slow@example.org")
    url = url_for(server, "timeout=0.3")
    sender = SmtpSender(url, connections=1)

    results = send_all(sender, [make_message(1, to="slow@example.org"), make_message(2)])

    assert isinstance(results[0], TemporaryDeliveryError)
    assert "timed out" in str(results[0])
    assert results[1] == "<run-2.0@tidings>"  # on a new connection: the first one was dropped
    assert server.sessions == 2
    assert [r.rcpt_tos for r in server.received] == [("user2@example.org",)]


def test_a_connection_cut_mid_message_is_temporary(server: SmtpTestServer) -> None:
    server.drop("cut@example.org")

    [result] = send_all(SmtpSender(url_for(server)), [make_message(1, to="cut@example.org")])

    assert isinstance(result, TemporaryDeliveryError)
    assert f"lost 127.0.0.1:{server.port}" in str(result)
    assert server.received == []
