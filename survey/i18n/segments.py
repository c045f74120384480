"""How many SMS segments a text costs: each one is billed, so the survey text aims for one.

An SMS carries 140 bytes. A text made only of characters of the GSM 7-bit default alphabet
(3GPP TS 23.038, "GSM 03.38") is packed 7 bits a character: 160 characters in one segment; the
characters of its extension table (``€ [ ] { } \\ ^ ~ |`` and form feed) are sent as an escape
and the character, so each counts 2. Any other character makes the whole text UCS-2 (UTF-16):
70 code units in one segment, and a character outside the Basic Multilingual Plane (most emoji)
takes 2. A longer text is split into segments that each lose 6 bytes to the concatenation
header: 153 GSM characters or 67 UCS-2 units a segment, an escape pair or a surrogate pair
never split across two.

National language shift tables (3GPP TS 23.038 §6.2.1.2.4), which some networks use to send
Turkish or Indian scripts 7 bits a character, are not counted on: carriers in the United States
do not use them, so a text is either GSM 7-bit or UCS-2 here.

No package on PyPI was worth a dependency for this: the codecs there give the character table
only, and the counting rules are these few lines either way.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "gsm-7"
UCS2 = "ucs-2"

# The default alphabet, in code order (0x1B, the escape to the extension table, left out).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
# The default extension table: two septets each (escape + character).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE = {GSM7: 160, UCS2: 70}  # characters (septets or UTF-16 units) in a text of one segment
PART = {GSM7: 153, UCS2: 67}  # in each segment of a longer text


@dataclass(frozen=True)
class SmsLength:
    """What a text costs: its encoding, its length in that encoding's units, its segments."""

    encoding: str
    units: int
    segments: int

    @property
    def single_limit(self) -> int:
        """The most units a text of this encoding may have and still go in one segment."""
        return SINGLE[self.encoding]


def is_gsm7(text: str) -> bool:
    """True if every character is in the GSM 7-bit default alphabet or its extension table."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _units(text: str, encoding: str) -> list[int]:
    """The size of each character in the encoding's units."""
    if encoding == GSM7:
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def sms_length(text: str) -> SmsLength:
    """The encoding a phone network would use for ``text``, its length, and its segments."""
    encoding = GSM7 if is_gsm7(text) else UCS2
    sizes = _units(text, encoding)
    units = sum(sizes)
    if units <= SINGLE[encoding]:
        return SmsLength(encoding, units, 1 if units else 0)
    segments, used = 1, 0
    for size in sizes:  # an escape or surrogate pair stays whole: it opens the next segment
        if used + size > PART[encoding]:
            segments, used = segments + 1, 0
        used += size
    return SmsLength(encoding, units, segments)


def sms_segments(text: str) -> int:
    """How many SMS segments ``text`` is sent (and billed) as."""
    return sms_length(text).segments
