"""OutboxDirSender: one file per message key, written atomically, rewritten on retry."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from support.messages import make_message, make_sms
from tidings.adapters.outbox_dir import OutboxDirSender, file_stem
from tidings.errors import PermanentDeliveryError, TemporaryDeliveryError
from tidings.model.messages import Message


def email(sender: OutboxDirSender, message: Message) -> str:
    return asyncio.run(sender.send_email(message))


def sms(sender: OutboxDirSender, message: Message) -> str:
    return asyncio.run(sender.send_sms(message))


def listing(folder: Path) -> list[str]:
    """Every entry in the folder, hidden temporary files included."""
    return sorted(p.name for p in folder.iterdir())


def test_an_email_becomes_an_eml_file_a_mail_client_can_open(tmp_path: Path) -> None:
    sender = OutboxDirSender(tmp_path / "outbox")

    reference = email(sender, make_message(1, subject="Grüße"))

    assert reference == "<run-1.0@tidings>"
    [name] = listing(tmp_path / "outbox")
    assert name == f"{file_stem('run-1:0')}.eml"
    mail = message_from_bytes((tmp_path / "outbox" / name).read_bytes(), policy=policy.default)
    assert mail["To"] == "user1@example.org"
    assert mail["Subject"] == "Grüße"
    assert mail["Message-ID"] == "<run-1.0@tidings>"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]


def test_an_sms_becomes_a_txt_file(tmp_path: Path) -> None:
    sender = OutboxDirSender(tmp_path)

    reference = sms(sender, make_sms(3, sender="Shop", text="Code: 1003\nMerci"))

    assert reference == f"{file_stem('run-3:0')}.txt"
    assert (tmp_path / reference).read_text(encoding="utf-8") == (
        "To: +33612345673\nFrom: Shop\nType: transactional\nKey: run-3:0\n\nCode: 1003\nMerci\n"
    )


def test_sending_again_rewrites_the_same_file_instead_of_adding_one(tmp_path: Path) -> None:
    sender = OutboxDirSender(tmp_path)
    message = make_message(1)

    email(sender, message)
    [name] = listing(tmp_path)
    original = (tmp_path / name).read_bytes()
    email(sender, message.model_copy(update={"attempts": 3}))
    sms(sender, make_sms(2))
    sms(sender, make_sms(2))

    assert listing(tmp_path) == sorted([name, f"{file_stem('run-2:0')}.txt"])
    assert (tmp_path / name).read_bytes() == original


def test_a_rewrite_replaces_the_content(tmp_path: Path) -> None:
    sender = OutboxDirSender(tmp_path)

    sms(sender, make_sms(1, text="first"))
    reference = sms(sender, make_sms(1, text="second"))

    assert listing(tmp_path) == [reference]
    assert (tmp_path / reference).read_text(encoding="utf-8").endswith("\n\nsecond\n")


@pytest.mark.parametrize(
    ("first", "second"),
    [("run:1/0", "run_1_0"), ("a/b", "a:b"), ("x" * 200 + "1", "x" * 200 + "2")],
)
def test_keys_that_look_alike_get_their_own_files(first: str, second: str) -> None:
    assert file_stem(first) != file_stem(second)
    for stem in (file_stem(first), file_stem(second)):
        assert len(stem) <= 93
        assert "/" not in stem
        assert not stem.startswith(".")


def test_a_non_ascii_mailbox_is_written_as_utf8(tmp_path: Path) -> None:
    sender = OutboxDirSender(tmp_path)

    email(sender, make_message(1, to="Jürgen <jürgen@example.org>"))

    data = (tmp_path / listing(tmp_path)[0]).read_bytes()
    assert "To: Jürgen <jürgen@example.org>".encode() in data


def test_an_injected_header_writes_nothing(tmp_path: Path) -> None:
    sender = OutboxDirSender(tmp_path)

    with pytest.raises(PermanentDeliveryError):
        email(sender, make_message(1, to="a@example.org\r\nBcc: b@example.org"))
    with pytest.raises(PermanentDeliveryError):
        sms(sender, make_sms(1, to="+33612345678\nFrom: bank"))

    assert not tmp_path.exists() or listing(tmp_path) == []


def test_a_folder_that_cannot_be_written_is_a_temporary_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")

    with pytest.raises(TemporaryDeliveryError, match="cannot write"):
        email(OutboxDirSender(blocker), make_message())


def test_the_default_sender_and_unsubscribe_link_apply(tmp_path: Path) -> None:
    sender = OutboxDirSender(
        tmp_path, mail_from="Ops <ops@example.com>", unsubscribe_url=lambda m: "https://u.example/x"
    )

    email(sender, make_message(1, sender=None))

    mail = message_from_bytes((tmp_path / listing(tmp_path)[0]).read_bytes(), policy=policy.default)
    assert mail["From"] == "Ops <ops@example.com>"
    assert mail["List-Unsubscribe"] == "<https://u.example/x>"
