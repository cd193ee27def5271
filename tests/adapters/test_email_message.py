"""The MIME message: headers, parts, Unicode, unsubscribe headers, and no header injection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.messages import T0, make_message
from tidings.adapters.email_message import (
    build_email,
    clean_subject,
    date_header,
    needs_smtputf8,
    parse_address,
    to_bytes,
)
from tidings.errors import PermanentDeliveryError

UNSUB = "https://tidings.example/u/abc123"


def reparse(mail: EmailMessage) -> EmailMessage:
    """What a receiving mail client reads: the bytes on the wire, parsed back."""
    raw = mail.as_bytes()
    return cast(EmailMessage, message_from_bytes(raw, policy=policy.default))


def body(part: EmailMessage) -> str:
    """A part's decoded text with the wire's CRLF line ends read as newlines."""
    return str(part.get_content()).replace("\r\n", "\n")


def test_headers_and_both_parts_reach_the_reader() -> None:
    message = make_message(reply_to="Support <help@example.com>")

    mail = reparse(build_email(message, list_unsubscribe=None))

    assert mail["From"] == "Tidings <news@example.com>"
    assert mail["To"] == "user1@example.org"
    assert mail["Reply-To"] == "Support <help@example.com>"
    assert mail["Subject"] == "Hello 1"
    assert mail["Date"] == "Wed, 01 May 2024 09:00:00 +0000"
    assert mail["Message-ID"] == "<run-1.0@tidings>"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), body(p)) for p in mail.iter_parts()]
    assert parts == [
        ("text/plain", "Plain body 1\n"),
        ("text/html", "<p>HTML body 1</p>\n"),
    ]


def test_text_only_message_is_a_single_plain_part() -> None:
    mail = reparse(build_email(make_message(html=None), list_unsubscribe=None))

    assert mail.get_content_type() == "text/plain"
    assert body(mail) == "Plain body 1\n"


def test_the_same_message_builds_the_same_bytes_every_time() -> None:
    message = make_message()

    first = build_email(message, list_unsubscribe=UNSUB).as_bytes()
    again = build_email(message, list_unsubscribe=UNSUB).as_bytes()

    assert first == again
    assert b"Message-ID: <run-1.0@tidings>" in first


def test_a_deferred_message_is_dated_when_it_was_allowed_to_go() -> None:
    message = make_message(not_before=T0 + timedelta(hours=8))

    mail = reparse(build_email(message, list_unsubscribe=None))

    assert mail["Date"] == "Wed, 01 May 2024 17:00:00 +0000"


@pytest.mark.parametrize(
    ("sender", "sender_name", "to", "to_name", "subject"),
    [
        (
            "Zoë Ünïcode <zoe@ex.com>",
            "Zoë Ünïcode",
            "Jürgen Groß <jg@ex.org>",
            "Jürgen Groß",
            "Grüße",
        ),
        (
            '"Dupont, Frères" <df@ex.com>',
            "Dupont, Frères",
            "山田太郎 <t@ex.jp>",
            "山田太郎",
            "ご注文",
        ),
        ("Émile <e@ex.com>", "Émile", "Ana <ana@ex.org>", "Ana", "Ünïcode " * 20),
        ("Plain <p@ex.com>", "Plain", "x@ex.org", "", "emoji \N{PARTY POPPER} subject"),
    ],
)
def test_unicode_display_names_and_subjects_decode_back_exactly(
    sender: str, sender_name: str, to: str, to_name: str, subject: str
) -> None:
    message = make_message(sender=sender, to=to, subject=subject)

    built = build_email(message, list_unsubscribe=None)
    mail = reparse(built)

    assert built.as_bytes().isascii()  # encoded words: names need no SMTPUTF8
    assert mail["From"].addresses[0].display_name == sender_name
    assert mail["To"].addresses[0].display_name == to_name
    assert mail["Subject"] == subject.strip()


def test_marketing_mail_with_a_link_offers_one_click_unsubscribe() -> None:
    mail = reparse(build_email(make_message(transactional=False), list_unsubscribe=UNSUB))

    assert mail["List-Unsubscribe"] == f"<{UNSUB}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_long_unsubscribe_link_stays_literal_on_the_wire() -> None:
    # Python would fold it into RFC 2047 encoded words, which mail clients do not decode here.
    link = "https://tidings.example/u/" + "eyJjIjoiY29udGFjdC0xIn0." + "x" * 200

    for utf8 in (False, True):
        raw = to_bytes(build_email(make_message(), list_unsubscribe=link), utf8=utf8)

        assert f"\r\nList-Unsubscribe: <{link}>\r\n".encode() in raw


def test_an_unusable_unsubscribe_link_is_refused() -> None:
    for link in ("https://u.example/a b", "https://u.example/>x", "https://u.example/" + "x" * 900):
        with pytest.raises(PermanentDeliveryError, match="unusable unsubscribe link"):
            build_email(make_message(), list_unsubscribe=link)


@pytest.mark.parametrize(
    ("transactional", "link"),
    [(True, UNSUB), (False, None), (True, None)],
)
def test_no_unsubscribe_headers_on_transactional_mail_or_without_a_link(
    transactional: bool, link: str | None
) -> None:
    mail = reparse(build_email(make_message(transactional=transactional), list_unsubscribe=link))

    assert "List-Unsubscribe" not in mail
    assert "List-Unsubscribe-Post" not in mail


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to", "victim@example.org\r\nBcc: everyone@example.org"),
        ("to", "victim@example.org\nBcc: everyone@example.org"),
        ("to", "Name\r\n <victim@example.org>"),
        ("sender", "Evil\rX-Injected: 1 <e@example.com>"),
        ("reply_to", "r@example.com\u2028Bcc: x@example.org"),
        ("to", "nul\x00@example.org"),
    ],
)
def test_control_characters_in_an_address_are_refused(field: str, value: str) -> None:
    with pytest.raises(PermanentDeliveryError, match="control character"):
        build_email(make_message(**{field: value}), list_unsubscribe=None)


@pytest.mark.parametrize(
    "value",
    [
        "a@example.org, b@example.org",
        "friends: a@example.org, b@example.org;",
        "friends: a@example.org;",
        "nonsense",
        "a@",
        "@example.org",
        "Name <a@example.org",
        '"x" <a@example.org> trailing',
        "",
    ],
)
def test_anything_but_exactly_one_address_is_refused(value: str) -> None:
    with pytest.raises(PermanentDeliveryError, match="To: "):
        build_email(make_message(to=value), list_unsubscribe=None)


def test_line_breaks_in_a_subject_are_collapsed_not_turned_into_headers() -> None:
    message = make_message(subject="Hi\r\nBcc: everyone@example.org\n\n\tsee you")

    mail = reparse(build_email(message, list_unsubscribe=None))

    assert mail["Subject"] == "Hi Bcc: everyone@example.org see you"
    assert "Bcc" not in mail
    assert clean_subject("  a \x00\x1f b \u2028 c ") == "a b c"


_ATEXT = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
_LABEL = st.text("abcXYZ019-", min_size=1, max_size=8)
_PLAIN = st.builds(
    lambda local, domain: f"{'.'.join(local)}@{'.'.join(domain)}",
    st.lists(_ATEXT, min_size=1, max_size=3),
    st.lists(_LABEL, min_size=1, max_size=3),
)


@settings(max_examples=300)
@given(_PLAIN)
def test_a_bare_address_reads_as_the_header_parser_reads_it(value: str) -> None:
    header = policy.default.header_factory("To", value)
    [parsed] = [a for group in header.groups for a in group.addresses]

    address = parse_address(value, field="To")

    assert not header.defects
    assert address == parsed
    assert (address.display_name, address.addr_spec) == ("", parsed.addr_spec)


def test_an_internationalised_domain_travels_as_punycode() -> None:
    address = parse_address("Ana <ana@exämple.org>", field="To")

    assert address.addr_spec == "ana@xn--exmple-cua.org"
    assert not needs_smtputf8(address)


def test_a_non_ascii_local_part_needs_smtputf8() -> None:
    address = parse_address("jürgen@example.org", field="To")

    assert address.addr_spec == "jürgen@example.org"
    assert needs_smtputf8(address)


def test_the_default_sender_is_used_when_the_message_names_none() -> None:
    message = make_message(sender=None)

    mail = reparse(build_email(message, list_unsubscribe=None, default_sender="Ops <o@ex.com>"))

    assert mail["From"] == "Ops <o@ex.com>"
    with pytest.raises(PermanentDeliveryError, match="no sender address"):
        build_email(message, list_unsubscribe=None)


def test_a_subject_that_is_only_blanks_is_left_out() -> None:
    mail = reparse(build_email(make_message(subject=" \r\n "), list_unsubscribe=None))

    assert "Subject" not in mail


def _unspaced(name: str) -> str:
    return "".join(name.split())


NAMES = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x7f"),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    sender_name=NAMES,
    to_name=NAMES,
    subject=NAMES,
    text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=400),
    html=st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=400),
    utf8=st.booleans(),
)
def test_what_a_mail_client_reads_back_is_what_was_written(
    sender_name: str, to_name: str, subject: str, text: str, html: str | None, utf8: bool
) -> None:
    def mailbox(name: str, address: str) -> str:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{quoted}" <{address}>' if name.strip() else address

    sender = parse_address(mailbox(sender_name, "news@example.com"), field="From")
    to = parse_address(mailbox(to_name, "user@example.org"), field="To")
    message = make_message(
        sender=mailbox(sender_name, "news@example.com"),
        to=mailbox(to_name, "user@example.org"),
        subject=subject,
        text=text,
        html=html,
        transactional=False,
    )

    raw = to_bytes(build_email(message, list_unsubscribe=UNSUB), utf8=utf8)
    # Read as text: the bytes parser would leave UTF-8 headers (SMTPUTF8) as escapes.
    mail = cast(EmailMessage, message_from_string(raw.decode("utf-8"), policy=policy.default))

    assert utf8 or raw.isascii()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    # Blanks aside: Python's address parser keeps a space between two encoded words of one
    # name, which RFC 2047 (and mail clients) drop; names are written with runs of blanks as one.
    assert _unspaced(mail["From"].addresses[0].display_name) == _unspaced(sender.display_name)
    assert _unspaced(mail["To"].addresses[0].display_name) == _unspaced(to.display_name)
    assert mail["To"].addresses[0].addr_spec == "user@example.org"
    assert (mail["Subject"] or "") == clean_subject(subject)
    assert mail["List-Unsubscribe"] == f"<{UNSUB}>"
    parts = [mail] if not html else list(mail.iter_parts())
    expected = [text] if not html else [text, html]
    for part, written in zip(parts, expected, strict=True):
        wanted = written if written.endswith("\n") else written + "\n"
        normalised = wanted.replace("\r\n", "\n").replace("\r", "\n")
        assert body(part) == normalised


@settings(max_examples=300)
@given(
    st.datetimes(min_value=datetime(1, 1, 1), timezones=st.sampled_from([UTC, None]))
    | st.datetimes(timezones=st.just(timezone(timedelta(hours=-5, minutes=-30))))
)
def test_the_date_header_is_written_as_the_email_package_writes_it(when: datetime) -> None:
    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    assert date_header(when) == format_datetime(utc)
