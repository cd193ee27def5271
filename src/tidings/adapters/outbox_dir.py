"""A folder as the outbox: each email becomes an `.eml` file, each SMS a `.txt` file.

The default when no SMTP server or SMS provider is configured, and what `simulate` writes.
A file is named after the message key, so a retry or a re-claimed message overwrites its own
file instead of adding a second one; it is written to a temporary name and renamed, so a
reader never sees half a message. Files are not fsynced: this is a development outbox, and
`simulate` writes many thousands of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from tidings.adapters.email_message import build_email, envelope, needs_smtputf8, to_bytes
from tidings.errors import PermanentDeliveryError, TemporaryDeliveryError
from tidings.model.contacts import Channel
from tidings.model.messages import Message

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_STEM = 80
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def file_stem(key: str) -> str:
    """A file name for a message key: readable, safe on any file system, one per key."""
    readable = _UNSAFE.sub("_", key).strip("._")[:_MAX_STEM] or "message"
    # Two keys may read the same once unsafe characters are replaced; the hash keeps them apart.
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class OutboxDirSender:
    """Both an EmailSender and an SmsSender, writing messages as files into one folder."""

    def __init__(
        self,
        directory: Path,
        *,
        mail_from: str | None = None,
        unsubscribe_url: Callable[[Message], str | None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self._mail_from = mail_from
        self._unsubscribe_url = unsubscribe_url

    def __repr__(self) -> str:
        return f"OutboxDirSender({str(self.directory)!r})"

    def path_for(self, message: Message) -> Path:
        """Where this message's file is (or will be) written."""
        suffix = ".txt" if message.channel is Channel.sms else ".eml"
        return self.directory / (file_stem(message.key) + suffix)

    async def send_email(self, message: Message) -> str:
        """Write the message as an `.eml` file (what SMTP would carry) and return its Message-ID."""
        link = self._unsubscribe_url(message) if self._unsubscribe_url else None
        mail = build_email(message, list_unsubscribe=link, default_sender=self._mail_from)
        sender, recipient = envelope(message, default_sender=self._mail_from)
        data = to_bytes(mail, utf8=needs_smtputf8(sender, recipient))
        self._write(self.path_for(message), data)
        return message.message_id

    async def send_sms(self, message: Message) -> str:
        """Write the SMS as a `.txt` file (a few header lines, a blank line, the text)."""
        if _CONTROL.search(message.to):
            raise PermanentDeliveryError(f"not a mobile number: {message.to!r}")
        lines = [f"To: {message.to}"]
        if message.sender:
            lines.append(f"From: {_CONTROL.sub(' ', message.sender)}")
        lines += [
            f"Type: {'transactional' if message.transactional else 'marketing'}",
            f"Key: {message.key}",
            "",
            message.text,
        ]
        path = self.path_for(message)
        self._write(path, ("\n".join(lines) + "\n").encode("utf-8"))
        return path.name

    def _write(self, path: Path, data: bytes) -> None:
        """Write through a temporary file in the same folder, then rename over the target."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            try:
                os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide the files from other users
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise TemporaryDeliveryError(f"cannot write {path}: {exc.strerror or exc}") from exc
