"""MIME on the wire, written directly: header lines, RFC 2047 encoded words, quoted-printable.

The email package's modern API parses every header it is given back into a tree and folds it
again on output; for the few, known headers of an outbox message that cost most of delivery's
CPU (several milliseconds a message). This writer covers just what `email_message` builds:
ASCII header lines folded at spaces, non-ASCII text as UTF-8 encoded words (or raw UTF-8 when
the message travels with SMTPUTF8), mailboxes with quoted or encoded display names, and
7-bit quoted-printable parts. Tests read its output back with the email package.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address

CRLF = "\r\n"
MAX_LINE = 78  # RFC 5322's recommended line length; folding happens at spaces
# An encoded word is at most 75 characters: "=?utf-8?b?" + base64 + "?=" leaves 63 for base64,
# that is 45 bytes of UTF-8 (a multiple of 3, so no padding inside the run of words).
_WORD_BYTES = 45
# Characters that make a display name need quoting (RFC 5322 "specials", and quotes).
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
# Text a reader would take for an encoded word must itself be encoded to survive as written.
_LOOKS_ENCODED = re.compile(r"=\?[^?]*\?[bBqQ]\?")


def encoded_words(text: str) -> str:
    """`text` as UTF-8 base64 encoded words, folded between words, each whole characters."""
    words: list[str] = []
    chunk = bytearray()
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _WORD_BYTES:
            words.append(_word(bytes(chunk)))
            chunk.clear()
        chunk += data
    if chunk:
        words.append(_word(bytes(chunk)))
    return (CRLF + " ").join(words)


def _word(data: bytes) -> str:
    return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="


def needs_encoding(text: str, *, utf8: bool) -> bool:
    """Whether unstructured text cannot go as it is."""
    return (not utf8 and not text.isascii()) or _LOOKS_ENCODED.search(text) is not None


def unstructured(text: str, *, utf8: bool) -> str:
    """A header value of free text (a subject): as written, or encoded words."""
    return encoded_words(text) if needs_encoding(text, utf8=utf8) else text


def display_name(name: str, *, utf8: bool) -> str:
    """A mailbox's display name: an atom sequence, a quoted string, or encoded words."""
    if needs_encoding(name, utf8=utf8):
        return encoded_words(name)
    if _SPECIALS.search(name):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return name


def mailbox(address: Address, *, utf8: bool) -> str:
    """`Name <user@domain>` (the name's runs of blanks made one space), or the bare address
    when there is no name."""
    name = " ".join(address.display_name.split())
    if not name:
        return address.addr_spec
    return f"{display_name(name, utf8=utf8)} <{address.addr_spec}>"


def header_line(name: str, value: str) -> str:
    """`Name: value` CRLF, folded at spaces before MAX_LINE where the value has any (never
    before its first word, which a reader would otherwise read with a leading space)."""
    line = f"{name}: {value}"
    if len(line) <= MAX_LINE or CRLF in value:
        return line + CRLF
    first, *words = value.split(" ")
    pieces: list[str] = []
    current = f"{name}: {first}"
    for word in words:
        if len(current) + 1 + len(word) > MAX_LINE:
            pieces.append(current)
            current = " " + word
        else:
            current = f"{current} {word}"
    pieces.append(current)
    return CRLF.join(pieces) + CRLF


def quoted_printable(text: str) -> str:
    """A text part's body: UTF-8, quoted-printable, CRLF line ends, lines of at most 76."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(lines.encode("utf-8"), istext=True).decode("ascii")
    return encoded.replace("\n", CRLF)


@dataclass(frozen=True)
class Part:
    """One text part: its subtype (plain, html) and its text."""

    subtype: str
    text: str

    def lines(self) -> str:
        """Its headers and quoted-printable body."""
        return (
            f'Content-Type: text/{self.subtype}; charset="utf-8"{CRLF}'
            f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
            f"{quoted_printable(self.text)}"
        )


def body(parts: Sequence[Part], boundary: str) -> str:
    """The MIME headers and body: one part alone, or multipart/alternative around several."""
    if len(parts) == 1:
        return f"MIME-Version: 1.0{CRLF}{parts[0].lines()}"
    out = [
        f"MIME-Version: 1.0{CRLF}",
        f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}',
    ]
    for part in parts:
        # The line break before a delimiter belongs to the delimiter, not to the part.
        out.append(f"--{boundary}{CRLF}{part.lines()}{CRLF}")
    out.append(f"--{boundary}--{CRLF}")
    return "".join(out)
