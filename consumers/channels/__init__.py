"""Survey delivery channels: email over SMTP and SMS through Amazon SNS, behind one protocol.

The dispatcher gets its channels from :func:`channels_from_settings`, in order of preference, and
sends each survey through the first one that can take it. Another provider is one more class
implementing :class:`Channel` (see ``base.py``) and one more line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumers.channels.base import (
    EMAIL,
    LANGUAGES,
    SMS,
    Channel,
    ChannelUnavailableError,
    OutgoingSurvey,
    PermanentSendError,
    SendError,
    TransientSendError,
)

if TYPE_CHECKING:
    from nyc311.settings import Settings

__all__ = [
    "EMAIL",
    "LANGUAGES",
    "SMS",
    "Channel",
    "ChannelUnavailableError",
    "OutgoingSurvey",
    "PermanentSendError",
    "SendError",
    "TransientSendError",
    "channels_from_settings",
]


def channels_from_settings(settings: Settings) -> list[Channel]:
    """Email when ``SMTP_HOST`` is set, SMS when ``SMS_PROVIDER=sns``; email first.

    Email comes first because it costs nothing per message and carries the full survey with its
    link in any of the eleven languages; SMS reaches those who gave only a phone number.
    """
    channels: list[Channel] = []
    if settings.smtp_host:
        from consumers.channels.email import SmtpChannel

        channels.append(SmtpChannel.from_settings(settings))
    if settings.sms_provider == "sns":
        from consumers.channels.sms import SnsSmsChannel

        channels.append(SnsSmsChannel.from_settings(settings))
    return channels
