"""What every delivery channel shares: the survey to send, the errors, the ``Channel`` protocol.

The dispatcher knows nothing about SMTP or SNS. It hands an :class:`OutgoingSurvey` to the first
channel whose ``can_send`` accepts it and decides what to do from the class of error alone:

- :class:`PermanentSendError`: sending this survey again can never work (the address or number
  is refused). The survey is recorded as failed at once.
- :class:`TransientSendError`: the attempt may work later (server unreachable, timeout,
  throttling, a 4xx SMTP reply, a 5xx from AWS). The dispatcher retries with backoff.
- :class:`ChannelUnavailableError`, a :class:`TransientSendError`: the channel itself is broken
  (credentials refused, TLS not offered, certificate not trusted). The survey is fine and should
  not be charged an attempt for it, but an operator has to act; the channel logs it at ERROR.

Adding another provider (another SMS gateway, an email API) means writing one class that
implements :class:`Channel` and maps its failures onto these errors, and naming it in
``channels_from_settings``; the dispatcher does not change.

**No error carries the contact.** The dispatcher writes error messages to its log and to
``survey_dispatch.last_error``, and servers quote the address or number they refuse. So a
channel raises its errors through :func:`redacted`: the message keeps the library's error class
and the server's code and text, with the survey's address and number (in any form) replaced by
``<address>`` / ``<number>``, and the library's exception is not chained (its text would quote
them again in a traceback). A channel also sends inside :func:`nyc311.redact.sensitive`, so
whatever a library logs meanwhile is redacted by value too.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from nyc311.redact import redact_contact

# English and the ten designated citywide languages (Local Law 13 of 2025).
LANGUAGES = frozenset({"en", "es", "zh", "ru", "bn", "ht", "ko", "ar", "ur", "fr", "pl"})

EMAIL = "EMAIL"
SMS = "SMS"

MESSAGE_ID_DOMAIN = "surveys.311.nyc.gov"


@dataclass(frozen=True)
class OutgoingSurvey:
    """One survey, rendered in its language, ready for any channel.

    ``survey_id`` is a UUID string; the email channel derives the Message-ID from it, so a resend
    of the same survey carries the same Message-ID and mail systems can recognise the duplicate.
    """

    survey_id: str
    language: str
    email: str | None
    phone: str | None  # E.164, e.g. +12125550100
    subject: str
    text: str  # plain-text email body
    html: str  # HTML email body
    sms: str  # SMS text

    def __post_init__(self) -> None:
        try:
            uuid.UUID(self.survey_id)
        except (ValueError, AttributeError, TypeError):
            raise ValueError(f"survey_id: expected a UUID, got {self.survey_id!r}") from None
        if self.language not in LANGUAGES:
            raise ValueError(f"language: expected one of {sorted(LANGUAGES)}, "
                             f"got {self.language!r}")

    @property
    def message_id(self) -> str:
        """``<survey_id@surveys.311.nyc.gov>``: the same for every attempt at this survey."""
        return f"<{uuid.UUID(self.survey_id)}@{MESSAGE_ID_DOMAIN}>"


class SendError(Exception):
    """Sending a survey failed. Subclasses say whether to try again."""


class TransientSendError(SendError):
    """May succeed later: retry with backoff."""


class ChannelUnavailableError(TransientSendError):
    """The channel's own configuration or credentials are wrong; the survey itself is fine."""


class PermanentSendError(SendError):
    """Can never succeed for this survey: do not retry."""


def redacted(exc: SendError, survey: OutgoingSurvey, also: Iterable[str | None] = ()) -> SendError:
    """The same kind of error, its message with the survey's address and number replaced
    (``also``: other forms of them the channel used, e.g. the normalised recipient).

    Raise it ``from None``: the original error (and what it chained) may quote them.
    """
    return type(exc)(redact_contact(str(exc), survey.email, survey.phone, also))


@runtime_checkable
class Channel(Protocol):
    """A way to deliver a survey. ``name`` is the SurveySent channel: ``EMAIL`` or ``SMS``."""

    name: str

    def can_send(self, survey: OutgoingSurvey) -> bool:
        """Whether the survey carries the contact this channel needs."""
        ...

    def send(self, survey: OutgoingSurvey) -> None:
        """Deliver the survey; every delivery failure is raised as a :class:`SendError` whose
        message holds neither the address nor the number (see :func:`redacted`)."""
        ...

    def close(self) -> None:
        """Release connections. Safe to call more than once; ``send`` reconnects after it."""
        ...
