"""Survey links: a signed, expiring token that names one survey and nothing personal.

The token is an itsdangerous ``URLSafeTimedSerializer`` payload (HMAC-SHA1 over the payload and
a timestamp, keyed by ``NYC311_SURVEY_SECRET``): a person cannot forge one for another survey,
alter the survey it names, or use it after ``NYC311_SURVEY_TOKEN_DAYS``. The survey id inside
is a random UUID, so tokens cannot be enumerated either. The payload carries the survey id, the
request id and the language, so the survey page renders without a database lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALT = "nyc311-survey-link"


class TokenError(ValueError):
    """The token is not one we issued, or was altered."""


class TokenExpired(TokenError):
    """The token was ours but is older than its lifetime."""


@dataclass(frozen=True)
class SurveyClaim:
    survey_id: str
    request_id: str
    language: str
    issued_at: datetime | None = None


def _serializer(secret: str) -> URLSafeTimedSerializer:
    if len(secret) < 16:
        raise ValueError("NYC311_SURVEY_SECRET must be at least 16 characters")
    return URLSafeTimedSerializer(secret, salt=SALT)


def make_token(secret: str, survey_id: str, request_id: str, language: str) -> str:
    return str(_serializer(secret).dumps({"s": survey_id, "r": request_id, "l": language}))


def read_token(secret: str, token: str, max_age_seconds: int) -> SurveyClaim:
    """Verify and decode; raise :class:`TokenExpired` or :class:`TokenError`."""
    try:
        payload, issued = _serializer(secret).loads(token, max_age=max_age_seconds,
                                                    return_timestamp=True)
    except SignatureExpired as exc:
        raise TokenExpired("this survey link has expired") from exc
    except BadSignature as exc:
        raise TokenError("this survey link is not valid") from exc
    if not isinstance(payload, dict) or not {"s", "r", "l"} <= payload.keys():
        raise TokenError("this survey link is not valid")
    return SurveyClaim(str(payload["s"]), str(payload["r"]), str(payload["l"]), issued)
