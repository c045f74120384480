"""Checks an event must pass beyond its Avro schema before it may touch the projection.

Avro guarantees types; these rules guard the database and the published tables against values
that type-check but make no sense (an empty request id, a 5 MB complaint type, a NUL byte that
PostgreSQL text cannot hold, a date in another century). A failing record is dead-lettered by
the consumer and never half-applied.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.serde import DecodeError, Record


class ValidationError(DecodeError):
    """A record that decodes but breaks a rule of the contract."""


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)

# field -> (required non-empty, max length); fields not listed are checked for NUL only.
_TEXT_LIMITS: dict[str, tuple[bool, int]] = {
    "request_id": (True, 64),
    "agency": (True, 32),
    "agency_name": (True, 200),
    "complaint_type": (True, 200),
    "descriptor": (False, 500),
    "borough": (False, 50),
    "incident_zip": (False, 20),
    "language": (False, 35),
    "resolution_description": (False, 10_000),
    "feedback": (False, 5_000),
    "email": (False, 254),
    "phone": (False, 32),
}


def _check_text(name: str, field: str, value: Any) -> None:
    if value is None:
        required = _TEXT_LIMITS.get(field, (False, 0))[0]
        if required:
            raise ValidationError(f"{name}.{field}: required")
        return
    if not isinstance(value, str):
        return
    required, limit = _TEXT_LIMITS.get(field, (False, 10_000))
    if required and not value.strip():
        raise ValidationError(f"{name}.{field}: must not be empty")
    if len(value) > limit:
        raise ValidationError(f"{name}.{field}: {len(value)} characters, at most {limit}")
    if "\x00" in value:
        raise ValidationError(f"{name}.{field}: contains a NUL character")


def validate(name: str, record: Record) -> Record:
    """Return ``record`` unchanged if it satisfies the rules; raise :class:`ValidationError`."""
    occurred_at = record.get("occurred_at")
    if not isinstance(occurred_at, datetime) or not EARLIEST <= occurred_at < LATEST:
        raise ValidationError(f"{name}.occurred_at: {occurred_at!r} outside 2000–2100")
    for field, value in record.items():
        if field == "contact" and value is not None:
            for sub, subvalue in value.items():
                _check_text(name, sub, subvalue)
            if value.get("email") is not None and "@" not in value["email"]:
                raise ValidationError(f"{name}.contact.email: not an email address")
        else:
            _check_text(name, field, value)
    if name == "survey_answered" and record.get("satisfaction") is None \
            and not record.get("reopen_requested") and not record.get("feedback"):
        raise ValidationError(f"{name}: an answer with no rating, no reopen and no feedback")
    return record
