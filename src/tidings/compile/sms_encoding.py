"""How an SMS will travel: GSM-7 or UCS-2, how many units, how many segments (billed parts).

A text made only of GSM 03.38 characters (3GPP TS 23.038 default alphabet and its extension
table) is sent as GSM-7: one septet per basic character, two per extension character
(`^ { } \\ [ ~ ] | €` and form feed, sent as ESC + code). Anything else forces UCS-2 for the
whole message, counted in UTF-16 code units (an emoji outside the BMP is two).

One segment holds 160 septets or 70 UCS-2 units; a longer message is split into parts of 153
septets or 67 units (the rest is the concatenation header). Parts never split an escape pair or
a surrogate pair, so a part may carry one unit less than its maximum.

Decisions where sources disagree or are silent:
- Code 0x09 is the capital C with cedilla `Ç`, as drawn by 3GPP TS 23.038 and used by Android's
  GsmAlphabet; Unicode's GSM0338.TXT maps it to the small `ç` instead. So `Ç` is GSM-7 and `ç`
  forces UCS-2 — the cautious reading: we may over-count a part, never under-count.
- Greek capitals that look Latin (U+0391 ALPHA, U+0392 BETA...) are not substituted: they
  force UCS-2.
- The empty text is 0 segments: there is nothing to send (the sender refuses empty texts).
- `characters` counts code points, what an author sees as characters (a flag emoji, made of two
  code points, counts 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
"""The 127 characters of the default alphabet: all 128 codes but 0x1B, the escape."""

GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
"""Characters sent as ESC + code: two septets each."""

SINGLE_GSM = 160
MULTI_GSM = 153
SINGLE_UCS2 = 70
MULTI_UCS2 = 67


@dataclass(frozen=True)
class SmsInfo:
    """Size of an SMS: code points, encoding, units in that encoding, segments billed."""

    characters: int
    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    segments: int


def _segments(widths: list[int], single: int, multi: int) -> int:
    """Count parts, packing whole characters (1 or 2 units each) greedily into parts."""
    total = sum(widths)
    if total == 0:
        return 0
    if total <= single:
        return 1
    parts, used = 1, 0
    for width in widths:
        if used + width > multi:
            parts, used = parts + 1, 0
        used += width
    return parts


def is_gsm7(text: str) -> bool:
    """Whether every character of `text` is in the GSM 03.38 default alphabet or its extension."""
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def sms_info(text: str) -> SmsInfo:
    """Encoding, units and segments of `text` as an SMS."""
    if is_gsm7(text):
        widths = [2 if ch in GSM_EXTENSION else 1 for ch in text]
        segments = _segments(widths, SINGLE_GSM, MULTI_GSM)
        return SmsInfo(len(text), "GSM-7", sum(widths), segments)
    widths = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    segments = _segments(widths, SINGLE_UCS2, MULTI_UCS2)
    return SmsInfo(len(text), "UCS-2", sum(widths), segments)
