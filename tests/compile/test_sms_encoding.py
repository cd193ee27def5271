"""SMS encoding: which alphabet a text needs and how many billed segments it makes."""

from __future__ import annotations

import pytest

from tidings.compile.sms_encoding import GSM_BASIC, GSM_EXTENSION, SmsInfo, is_gsm7, sms_info

EMOJI = "\N{SMILING FACE WITH SMILING EYES}"  # outside the BMP: a surrogate pair in UTF-16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsInfo(0, "GSM-7", 0, 0)),
        ("Hello", SmsInfo(5, "GSM-7", 5, 1)),
        ("a" * 160, SmsInfo(160, "GSM-7", 160, 1)),
        ("a" * 161, SmsInfo(161, "GSM-7", 161, 2)),
        ("a" * 306, SmsInfo(306, "GSM-7", 306, 2)),  # 2 x 153
        ("a" * 307, SmsInfo(307, "GSM-7", 307, 3)),
        ("€", SmsInfo(1, "GSM-7", 2, 1)),
        ("Total: 12€", SmsInfo(10, "GSM-7", 11, 1)),
        ("€" * 80, SmsInfo(80, "GSM-7", 160, 1)),
        ("€" * 81, SmsInfo(81, "GSM-7", 162, 2)),
        ("{[~]}|^\\\f", SmsInfo(9, "GSM-7", 18, 1)),
        ("Ça va? ÄÖÜ äöü ñ à è é ù ì ò Ø ø Å å Æ æ ß É ¡ ¿ £ ¥ § ¤ @ _", None),
        ("ça", SmsInfo(2, "UCS-2", 2, 1)),  # small c cedilla is not in 3GPP TS 23.038
        ("line\nbreak\r", SmsInfo(11, "GSM-7", 11, 1)),
        ("tab\there", SmsInfo(8, "UCS-2", 8, 1)),
        ("Straße", SmsInfo(6, "GSM-7", 6, 1)),
        ("Привет", SmsInfo(6, "UCS-2", 6, 1)),
        ("a" * 70 + "й", SmsInfo(71, "UCS-2", 71, 2)),
        ("й" * 70, SmsInfo(70, "UCS-2", 70, 1)),
        ("й" * 134, SmsInfo(134, "UCS-2", 134, 2)),  # 2 x 67
        ("й" * 135, SmsInfo(135, "UCS-2", 135, 3)),
        (EMOJI, SmsInfo(1, "UCS-2", 2, 1)),
        (EMOJI * 35, SmsInfo(35, "UCS-2", 70, 1)),
        (EMOJI * 36, SmsInfo(36, "UCS-2", 72, 2)),
        ("\N{REGIONAL INDICATOR SYMBOL LETTER F}\N{REGIONAL INDICATOR SYMBOL LETTER R}",
         SmsInfo(2, "UCS-2", 4, 1)),
    ],
)  # fmt: skip
def test_sms_info(text: str, expected: SmsInfo | None) -> None:
    info = sms_info(text)
    if expected is None:  # a line of accented GSM characters: one septet each
        expected = SmsInfo(len(text), "GSM-7", len(text), 1)
    assert info == expected


def test_an_escape_pair_is_never_split_across_segments() -> None:
    # 152 septets then '€' (2): it cannot fit in the first 153-septet part, so it moves on.
    text = "a" * 152 + "€" + "b" * 152
    info = sms_info(text)
    assert info.units == 306  # would fit exactly in 2 parts if pairs could be split
    assert info.segments == 3


def test_a_surrogate_pair_is_never_split_across_segments() -> None:
    text = "й" * 66 + EMOJI + "й" * 66
    info = sms_info(text)
    assert info.units == 134  # 2 x 67, but the emoji cannot straddle the boundary
    assert info.segments == 3


def test_the_alphabet_has_all_128_codes_but_the_escape() -> None:
    assert len(GSM_BASIC) == 127
    assert len(GSM_EXTENSION) == 10
    assert not GSM_BASIC & GSM_EXTENSION
    assert "\x1b" not in GSM_BASIC


@pytest.mark.parametrize(
    ("text", "gsm"),
    [("Hello, world!", True), ("café", True), ("naïve", False), ("`backtick`", False), ("", True)],
)
def test_is_gsm7(text: str, gsm: bool) -> None:
    assert is_gsm7(text) is gsm
