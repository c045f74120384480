"""Keep residents' email addresses and phone numbers out of logs, error columns and exceptions.

A survey's contact is personal data; it belongs in the projection's ``contacts`` table and
nowhere else. Yet the outside world quotes it back at us: a mail server refusing a recipient
says ``550 5.1.1 <maria@example.org>: Recipient address rejected``, SNS says ``Invalid
parameter: PhoneNumber Reason: +1212555 is not valid``, and a library's exception text may
carry either. Two layers keep it out:

1. **By value**, where the contact is known (the channels, the dispatcher's error recording):
   :func:`redact_contact` replaces the address and number themselves, in every form a server
   may echo them (as given, trimmed, lower-cased, escaped as ``repr`` would, the normalised
   recipient, the local part, the digits of the number, each piece around spaces and line
   breaks), with ``<address>`` / ``<number>``. This catches what no pattern can: an address
   without ``@``, a number with letters in it. :func:`sensitive` also makes those values known
   to the log filter for the duration of a send.
2. **By pattern**, everywhere: :func:`redact_text` replaces anything shaped like an email address
   (``local@domain.tld``, quoted local parts too) or a phone number (``+`` and six or more digits,
   spaces, dots, dashes or brackets allowed between them; North American ``212-555-0123`` /
   ``(212) 555-0123``). :class:`RedactingFilter` applies it to every log record (message,
   arguments, exception and stack text, extra fields), as a last line of defence.

What the patterns deliberately leave alone: plain digit runs (Kafka offsets, 311 request ids,
counts), UUIDs, ISO timestamps and their ``+00:00`` offsets, IP addresses and ports, and
``user:***@127.0.0.1`` database URLs (an address needs a domain ending in letters; a URL whose
host is a name loses that host in the log line, a price worth paying).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar

ADDRESS = "<address>"
NUMBER = "<number>"

#: Pieces of a contact shorter than this are not replaced on their own: redacting every "a" or
#: "12" of a message would destroy it, and so short a piece identifies no one.
MIN_PIECE = 3

# A quoted local part, or one without brackets, quotes at its start, commas and the like (an
# apostrophe inside is allowed: o'brien@...).
_LOCAL = r"""(?:"[^"\r\n]{0,512}"|[^\s@<>()\[\]{},;:"'`|\\][^\s@<>()\[\]{},;:"`|\\]*)"""
_DOMAIN = r"""[^\s@<>()\[\]{},;:"'`|\\/=]+\.[^\W\d_]{2,}"""
EMAIL_PATTERN = re.compile(f"{_LOCAL}@{_DOMAIN}")
# "+" then 6 or more digits, separators between them; not a "+" glued to a word (the "+00:00"
# of a timestamp has 2 digits and a colon anyway).
_E164ISH = r"(?<![\w+])\+\d(?:[ \t.()\-]{0,2}\d){5,}"
# 212-555-0123, 212.555.0123, 212 555 0123, (212) 555-0123 (with "+1 " before it, the first).
_NANP = r"(?<![\w.+\-])(?:\(\d{3}\)[ \t]?|\d{3}[ \t.\-])\d{3}[ \t.\-]\d{4}(?![\w\-])"
PHONE_PATTERN = re.compile(f"{_E164ISH}|{_NANP}")

_SPLIT = re.compile(r"[\s\x00-\x1f\x7f]+")

Replacement = tuple[re.Pattern[str], str]
_ACTIVE: ContextVar[tuple[Replacement, ...]] = ContextVar("nyc311_redact_active", default=())


def redact_text(text: str) -> str:
    """Replace email-like and phone-like strings (the pattern layer)."""
    if not text:
        return text
    text = EMAIL_PATTERN.sub(ADDRESS, text)
    return PHONE_PATTERN.sub(NUMBER, text)


def _variants(value: str) -> set[str]:
    """The forms a value may come back in: as given, trimmed, lower-cased, escaped."""
    forms = {value, value.strip()}
    for form in list(forms):
        forms.add(form.lower())
        forms.add(repr(form)[1:-1])  # "\r\n" as the two-character escapes, quotes escaped
        forms.add(form.encode("unicode_escape").decode("ascii"))
        forms.add(form.encode("ascii", "backslashreplace").decode("ascii"))
    return forms


def _email_pieces(email: str) -> set[str]:
    pieces = _variants(email) | _variants(_SPLIT.sub("", email))  # also with blanks squeezed out
    text = email.strip()
    local, at, domain = text.rpartition("@")
    if at and local:
        pieces |= _variants(local)
        pieces |= _variants(local.strip('"'))
        with suppress(UnicodeError):  # the recipient as the channel sends it: IDNA domain
            pieces.add(f"{local}@{domain.encode('idna').decode('ascii')}")
    for part in _SPLIT.split(text):  # an address with spaces or line breaks, piece by piece
        pieces |= _variants(part)
    return pieces


def _phone_pieces(phone: str) -> set[str]:
    pieces = _variants(phone)
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) >= 7:
        pieces |= {digits, f"+{digits}"}
        if digits.startswith("1") and len(digits) > 7:
            pieces.add(digits[1:])  # the national number of a +1 number
    for part in _SPLIT.split(phone.strip()):
        pieces |= _variants(part)
    return pieces


def _piece_pattern(piece: str) -> re.Pattern[str]:
    """The piece, any case, not as part of a longer word: the local part "ana" is replaced in
    "<ana@…>" but not in "banana"."""
    before = r"(?<!\w)" if re.match(r"\w", piece) else ""
    after = r"(?!\w)" if re.search(r"\w$", piece) else ""
    return re.compile(before + re.escape(piece) + after, re.IGNORECASE)


def _replacements(emails: Iterable[str | None],
                  phones: Iterable[str | None]) -> list[Replacement]:
    """(pattern, placeholder) pairs, longest piece first."""
    found: dict[str, str] = {}
    for email in emails:
        if email:
            for piece in _email_pieces(email):
                found.setdefault(piece, ADDRESS)
    for phone in phones:
        if phone:
            for piece in _phone_pieces(phone):
                found.setdefault(piece, NUMBER)
    pieces = sorted((p for p in found if len(p.strip()) >= MIN_PIECE), key=len, reverse=True)
    return [(_piece_pattern(p), found[p]) for p in pieces]


def _replace(text: str, replacements: Iterable[Replacement]) -> str:
    for pattern, placeholder in replacements:
        text = pattern.sub(placeholder, text)
    return text


def redact_contact(text: str, email: str | None = None, phone: str | None = None,
                   also: Iterable[str | None] = ()) -> str:
    """``text`` with this contact's address and number (every form of them) and anything else
    email- or phone-like replaced. ``also``: other forms of the address, e.g. the recipient as a
    channel normalised it."""
    if not text:
        return text
    return redact_text(_replace(text, _replacements([email, *also], [phone])))


@contextmanager
def sensitive(email: str | None = None, phone: str | None = None,
              also: Iterable[str | None] = ()) -> Iterator[None]:
    """While the block runs (in this thread or task), the log filter also redacts this
    contact by value, e.g. in what a library logs during the send."""
    token = _ACTIVE.set(_ACTIVE.get() + tuple(_replacements([email, *also], [phone])))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def redact_active(text: str) -> str:
    """``text`` with the contacts made sensitive in this context, and the patterns, replaced."""
    if not text:
        return text
    active = _ACTIVE.get()
    return redact_text(_replace(text, active) if active else text)


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Redacts every record that passes a handler: message with its arguments, exception and
    stack text, string extra fields. Attached to the handlers by ``setup_logging``."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep its parts, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact_active(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_active(record.exc_text)
            # the exception object would let a formatter print it again, unredacted
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact_active(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact_active(value))
        return True
