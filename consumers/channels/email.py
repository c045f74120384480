"""Email surveys over SMTP, with STARTTLS and AUTH, classified so the dispatcher knows to retry.

One connection is kept open between sends and checked with NOOP before reuse; a connection the
server dropped is replaced silently. Each survey is a ``multipart/alternative`` message (plain
text and HTML, UTF-8, quoted-printable so any relay takes it) whose Message-ID is derived from the
survey id: a retried survey carries the same Message-ID as the first attempt.

How failures are classified (SMTP reply codes follow RFC 5321: 4xx temporary, 5xx permanent):

- Recipient refused (``RCPT TO``) or message refused (``DATA``) with 5xx, or an address that is
  not an address at all: :class:`PermanentSendError`. Nothing we do later will change it.
- The same with 4xx, connection refused or lost, timeouts, TLS errors:
  :class:`TransientSendError`.
- Credentials refused (``SMTPAuthenticationError``), AUTH or STARTTLS not offered, the server's
  certificate not trusted, our own From refused: :class:`ChannelUnavailableError` (a
  ``TransientSendError``), logged at ERROR. These are the operator's to fix, not the person's. A
  permanent classification would mark every survey sent while the password is wrong as failed,
  and the law owes each of them a survey; a transient one is retried and goes out once the
  credentials are fixed. The distinct class lets the dispatcher tell "this survey keeps failing"
  from "the channel is down" and not spend a survey's attempts on the latter. The error log says
  what to fix.

STARTTLS is never skipped: when it is configured and the server does not offer it, nothing is
sent (no silent downgrade to plain text).

Error messages name smtplib's error class and the server's code and reply; the recipient is
replaced by ``<address>`` wherever the reply quotes it (``base.redacted``).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING

from consumers.channels.base import (
    EMAIL,
    ChannelUnavailableError,
    OutgoingSurvey,
    PermanentSendError,
    SendError,
    TransientSendError,
    redacted,
)
from nyc311.redact import sensitive

if TYPE_CHECKING:
    from nyc311.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0


def recipient_address(raw: str | None) -> str:
    """The addr-spec to send to, its domain IDNA-encoded; PermanentSendError if it is not one.

    Internationalized local parts (non-ASCII before the ``@``) would need SMTPUTF8 end to end and
    are refused here as permanent rather than half-supported. The error never repeats the
    address: it ends up in logs and the dispatch table, and personal data stays in ``contacts``
    (the parser's own message may quote it, so ``send`` redacts what is raised here too).
    """
    if not raw or not raw.strip():
        raise PermanentSendError("no email address")
    text = raw.strip()
    try:
        address = Address(addr_spec=text)
        domain = address.domain.encode("idna").decode("ascii")
    except Exception as exc:  # the parser raises several unrelated classes for bad input
        raise PermanentSendError(f"not a usable email address ({type(exc).__name__}: {exc})"
                                 ) from None
    if not address.username or "." not in domain:
        raise PermanentSendError("not a usable email address (no domain)")
    return Address(username=address.username, domain=domain).addr_spec


def build_message(survey: OutgoingSurvey, *, sender: str, recipient: str) -> EmailMessage:
    """The survey as a multipart/alternative UTF-8 message; non-ASCII headers are RFC 2047."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = survey.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = survey.message_id
    # RFC 3834: tells vacation responders not to answer; the second is Exchange's equivalent.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(survey.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(survey.html, subtype="html", charset="utf-8", cte="quoted-printable")
    # After the body: set_content clears every Content-* header, this one included.
    message["Content-Language"] = survey.language
    return message


def _reply_code(code: int) -> type[SendError]:
    return PermanentSendError if 500 <= code < 600 else TransientSendError


def _decode(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _unavailable(message: str) -> ChannelUnavailableError:
    log.error("email channel unavailable, surveys wait until it is fixed: %s", message)
    return ChannelUnavailableError(message)


class SmtpChannel:
    """Sends surveys through one SMTP server (``SMTP_*`` settings)."""

    name = EMAIL

    def __init__(self, host: str, port: int = 587, *, starttls: bool = True, username: str = "",
                 password: str = "", sender: str = "NYC 311 <surveys@311.nyc.gov>",
                 timeout: float = DEFAULT_TIMEOUT, ssl_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None) -> None:
        if not host:
            raise ValueError("SmtpChannel needs a host")
        self.host = host
        self.port = port
        self.starttls = starttls
        self.username = username
        self._password = password
        self.sender = sender
        self.envelope_from = parseaddr(sender)[1]
        if "@" not in self.envelope_from:
            raise ValueError(f"SMTP_FROM: expected an address such as 'NYC 311 "
                             f"<surveys@311.nyc.gov>', got {sender!r}")
        self.timeout = timeout
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        if username and not starttls:
            log.warning("SMTP AUTH without STARTTLS: the password crosses the network in clear")

    @classmethod
    def from_settings(cls, settings: Settings,
                      ssl_context: ssl.SSLContext | None = None) -> SmtpChannel:
        return cls(settings.smtp_host, settings.smtp_port, starttls=settings.smtp_starttls,
                   username=settings.smtp_username, password=settings.smtp_password,
                   sender=settings.smtp_from, ssl_context=ssl_context)

    def __repr__(self) -> str:
        return (f"SmtpChannel({self.host}:{self.port}, starttls={self.starttls}, "
                f"username={self.username!r})")

    def can_send(self, survey: OutgoingSurvey) -> bool:
        return bool(survey.email and survey.email.strip())

    def send(self, survey: OutgoingSurvey) -> None:
        try:  # the address as it goes on the wire, where the server may quote it
            also = [recipient_address(survey.email)]
        except SendError:
            also = []
        with sensitive(survey.email, survey.phone, also):
            try:
                self._send(survey)
            except SendError as exc:
                raise redacted(exc, survey, also) from None

    def _send(self, survey: OutgoingSurvey) -> None:
        recipient = recipient_address(survey.email)
        try:
            message = build_message(survey, sender=self.sender, recipient=recipient)
        except ValueError as exc:  # a header with a line break: the rendered survey is unusable
            raise PermanentSendError(f"cannot build the email: {type(exc).__name__}: {exc}"
                                     ) from exc
        with self._lock:
            conn = self._connection()
            try:
                conn.send_message(message, from_addr=self.envelope_from, to_addrs=[recipient])
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = next(iter(exc.recipients.values()))
                raise _reply_code(code)(f"recipient refused: {type(exc).__name__} {code} "
                                        f"{_decode(reply)}") from exc
            except smtplib.SMTPSenderRefused as exc:
                self._drop()
                if 500 <= exc.smtp_code < 600:
                    raise _unavailable(f"{self.host} refused our sender {exc.sender!r}: "
                                       f"{exc.smtp_code} {_decode(exc.smtp_error)}") from exc
                raise TransientSendError(f"sender deferred: {type(exc).__name__} "
                                         f"{exc.smtp_code} {_decode(exc.smtp_error)}") from exc
            except smtplib.SMTPDataError as exc:
                raise _reply_code(exc.smtp_code)(
                    f"message refused: {type(exc).__name__} {exc.smtp_code} "
                    f"{_decode(exc.smtp_error)}") from exc
            except smtplib.SMTPNotSupportedError as exc:  # the address needs SMTPUTF8
                raise PermanentSendError(f"{self.host} cannot take this address: "
                                         f"{type(exc).__name__}: {exc}") from exc
            except smtplib.SMTPResponseException as exc:
                self._drop()
                raise _reply_code(exc.smtp_code)(
                    f"{type(exc).__name__} {exc.smtp_code} {_decode(exc.smtp_error)}") from exc
            except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, TLS errors
                self._drop()
                raise TransientSendError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _connection(self) -> smtplib.SMTP:
        """The open connection if the server still answers NOOP, else a new one."""
        if self._conn is not None:
            try:
                if self._conn.noop()[0] == 250:
                    return self._conn
            except (smtplib.SMTPException, OSError):
                pass
            self._drop()
        self._conn = self._connect()
        return self._conn

    def _connect(self) -> smtplib.SMTP:
        where = f"{self.host}:{self.port}"
        try:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout,
                                local_hostname=self.local_hostname)
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientSendError(f"cannot connect to {where}: {exc}") from exc
        try:
            conn.ehlo()
            if self.starttls:
                if not conn.has_extn("starttls"):
                    raise _unavailable(f"{where} does not offer STARTTLS (SMTP_STARTTLS=true)")
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self._password)
        except SendError:
            conn.close()
            raise
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
            raise _unavailable(f"{where} refused the login of {self.username!r}: "
                               f"{exc.smtp_code} {_decode(exc.smtp_error)}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            conn.close()
            raise _unavailable(f"{where}: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            conn.close()
            raise _unavailable(f"{where}: certificate not trusted: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            conn.close()
            raise TransientSendError(f"{where}: {type(exc).__name__}: {exc}") from exc
        return conn
