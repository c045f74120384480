"""SMS surveys through Amazon SNS (``sns.publish`` to a phone number), errors classified.

Messages are sent as ``Transactional``: SNS then routes them for reliability rather than cost,
which is what a message the law requires calls for. Credentials come from the usual AWS chain
(environment, shared files, instance role); ``AWS_ENDPOINT_URL_SNS`` points the client at an
SNS-compatible service instead of AWS.

botocore's own retries are kept to one quick extra attempt: the dispatcher retries with backoff
across minutes, so retrying long here would only hold up the surveys behind this one.

How failures are classified:

- ``InvalidParameter`` and its kin (a number SNS refuses, a message too long), a request the
  client itself finds malformed: :class:`PermanentSendError`.
- Credentials or permissions refused, an account not opted in, a clock too far off:
  :class:`ChannelUnavailableError` (transient), logged at ERROR for the operator.
- Throttling, 5xx, connection errors, timeouts, and any error code not known here:
  :class:`TransientSendError`. An unknown code is retried rather than dropped, since each survey
  is owed by law and the dispatcher's attempt limit bounds the cost.

A successful publish means SNS accepted the message, not that the phone received it (SNS reports
delivery separately, in its delivery status logs).

Error messages keep the error class, SNS's code and its message, with the number replaced by
``<number>`` (SNS says ``Invalid parameter: PhoneNumber Reason: +1212555 is not valid``, quoting
it; ``base.redacted``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from consumers.channels.base import (
    SMS,
    ChannelUnavailableError,
    OutgoingSurvey,
    PermanentSendError,
    SendError,
    TransientSendError,
    redacted,
)
from nyc311.redact import redact_contact, sensitive

if TYPE_CHECKING:
    from nyc311.settings import Settings

log = logging.getLogger(__name__)

SMS_TYPE_ATTRIBUTE = "AWS.SNS.SMS.SMSType"

PERMANENT_CODES = frozenset({
    "InvalidParameter", "InvalidParameterValue", "ValidationError", "ValidationException",
    "EndpointDisabled", "OptedOut",
})
CHANNEL_CODES = frozenset({
    "AuthorizationError", "AccessDenied", "AccessDeniedException", "InvalidClientTokenId",
    "UnrecognizedClientException", "SignatureDoesNotMatch", "IncompleteSignature",
    "ExpiredToken", "ExpiredTokenException", "InvalidSecurity", "OptInRequired",
    "RequestExpired", "KMSAccessDenied", "KMSDisabled", "KMSInvalidState", "KMSNotFound",
    "KMSOptInRequired",
})


def classify_client_error(exc: ClientError, phone: str | None = None) -> SendError:
    """The SendError for an error answer from SNS, by its code and HTTP status; ``phone`` (the
    number sent to) is replaced wherever SNS's message quotes it."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = redact_contact(f"SNS {code or 'error'} ({status}): {error.get('Message', '')}",
                          phone=phone)
    if status >= 500:
        return TransientSendError(text)
    if code in PERMANENT_CODES:
        return PermanentSendError(text)
    if code in CHANNEL_CODES:
        log.error("SMS channel unavailable, surveys wait until it is fixed: %s", text)
        return ChannelUnavailableError(text)
    return TransientSendError(text)


class SnsSmsChannel:
    """Sends surveys as SMS through Amazon SNS, or a service that speaks its API."""

    name = SMS

    def __init__(self, region: str = "us-east-1", endpoint_url: str | None = None, *,
                 connect_timeout: float = 5.0, read_timeout: float = 15.0,
                 max_attempts: int = 2, client: Any = None) -> None:
        self.region = region
        self.endpoint_url = endpoint_url or None
        config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                        retries={"mode": "standard", "total_max_attempts": max_attempts})
        # A session of its own: boto3's default session is not safe to share across threads.
        self._client = client or boto3.session.Session().client(
            "sns", region_name=region, endpoint_url=self.endpoint_url, config=config)

    @classmethod
    def from_settings(cls, settings: Settings) -> SnsSmsChannel:
        return cls(settings.aws_region, settings.sns_endpoint_url or None)

    def __repr__(self) -> str:
        return f"SnsSmsChannel(region={self.region!r}, endpoint_url={self.endpoint_url!r})"

    def can_send(self, survey: OutgoingSurvey) -> bool:
        return bool(survey.phone and survey.phone.strip())

    def send(self, survey: OutgoingSurvey) -> None:
        with sensitive(survey.email, survey.phone):
            try:
                self._send(survey)
            except SendError as exc:
                raise redacted(exc, survey) from None

    def _send(self, survey: OutgoingSurvey) -> None:
        if not survey.phone:
            raise PermanentSendError("no phone number")
        try:
            self._client.publish(
                PhoneNumber=survey.phone.strip(),
                Message=survey.sms,
                MessageAttributes={
                    SMS_TYPE_ATTRIBUTE: {"DataType": "String", "StringValue": "Transactional"},
                },
            )
        except ClientError as exc:
            raise classify_client_error(exc, survey.phone) from exc
        except ParamValidationError as exc:
            raise PermanentSendError(f"SNS request refused by the client: "
                                     f"{type(exc).__name__}: {exc}") from exc
        except (NoCredentialsError, PartialCredentialsError, NoRegionError) as exc:
            log.error("SMS channel unavailable, surveys wait until it is fixed: %s", exc)
            raise ChannelUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        except BotoCoreError as exc:  # connection refused, timeouts, closed connections
            raise TransientSendError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._client.close()
