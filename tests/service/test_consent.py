"""Unsubscribe tokens and stop keywords: signed, url-safe, unforgeable; STOP in any case."""

from __future__ import annotations

import pytest

from tidings.model.contacts import Channel
from tidings.service.consent import ConsentToken, ConsentTokens, is_stop_request


@pytest.mark.parametrize("contact_id", ["1", "42", "ext:ü-ñ/é 7", "a" * 200])
@pytest.mark.parametrize("channel", list(Channel))
def test_a_token_names_its_contact_and_channel_and_is_url_safe(
    contact_id: str, channel: Channel
) -> None:
    tokens = ConsentTokens("secret")

    token = tokens.create(contact_id, channel)

    assert tokens.verify(token) == ConsentToken(contact_id, channel)
    assert tokens.create(contact_id, channel) == token  # the same link in every message
    assert all(c.isalnum() or c in "-_." for c in token)


def test_a_token_is_only_valid_under_its_own_secret_contact_and_channel() -> None:
    tokens = ConsentTokens("secret")
    token = tokens.create("42", Channel.email)
    channel, contact, mac = token.split(".")
    other = ConsentTokens("secret").create("43", Channel.email).split(".")[1]

    assert ConsentTokens("another secret").verify(token) is None
    assert tokens.verify(f"sms.{contact}.{mac}") is None
    assert tokens.verify(f"{channel}.{other}.{mac}") is None
    assert tokens.verify(f"{channel}.{contact}.{mac[:-2]}") is None
    assert tokens.verify(f"{channel}.{contact}.{mac}=") is None
    assert tokens.verify(f"{channel}.{contact}.{mac}.x") is None


def test_an_empty_secret_key_is_refused() -> None:
    with pytest.raises(ValueError, match="secret key"):
        ConsentTokens("")


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        ("STOP", True),
        ("stop", True),
        ("Stop.", True),
        ("  STOP please", True),
        ("Arrêt", True),
        ("ARRET", True),
        ("unsubscribe", True),
        ("STOPALL", True),
        ("quit", True),
        ("", False),
        ("don't stop", False),
        ("stopped by the shop", False),
        ("OK", False),
    ],
)
def test_a_reply_stops_when_its_first_word_is_a_stop_keyword(text: str, stop: bool) -> None:
    assert is_stop_request(text) is stop
