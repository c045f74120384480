"""Checks an event must pass beyond its Avro schema before it may touch the projection.

Avro guarantees types; these rules guard the database and the published tables against values
that type-check but make no sense (an empty request id, a 5 MB complaint type, a NUL byte that
PostgreSQL text cannot hold, a date in another century). A failing record is dead-lettered by
the consumer and never half-applied.

The text rules are compiled once per event type from its schema (the plain ``string`` fields,
top level and in ``contact``), so a record costs one pass over those fields only. ``uuid``
fields are left to their decoder: with logical types, fastavro parses them; without (the
projector), PostgreSQL's ``uuid`` columns refuse a malformed one and the consumer dead-letters
that record alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from schemas.serde import DecodeError, Record, current_schema


class ValidationError(DecodeError):
    """A record that decodes but breaks a rule of the contract."""


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
EARLIEST_MS = int(EARLIEST.timestamp()) * 1000
LATEST_MS = int(LATEST.timestamp()) * 1000

# field -> (required non-empty, max length); other text fields: optional, at most 10,000.
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
_DEFAULT_LIMIT = (False, 10_000)

#: The answers after which the survey asks why (NYC's survey asks the same people).
DISAGREEING = frozenset({"DISAGREE", "STRONGLY_DISAGREE"})
#: The dissatisfaction reason that is a reopen request ("The Agency did not correct the issue
#: and this Service Request should be reopened."): an answer with it has reopen_requested.
REOPEN_REASON = "NOT_CORRECTED_REOPEN"

TextRule = tuple[str, bool, int]  # field, required, max length


def _is_text(avro_type: Any) -> bool:
    """A plain string (not a uuid), or a union of null and one."""
    if avro_type == "string":
        return True
    if isinstance(avro_type, list):
        return any(_is_text(t) for t in avro_type) and all(
            t == "null" or _is_text(t) for t in avro_type)
    return False


# nonce (12) + the smallest JSON contact + tag (16); the largest contact the text rules allow
SEALED_MIN, SEALED_MAX = 12 + 16 + 16, 4096


def _text_rules(fields: list[dict[str, Any]]) -> tuple[TextRule, ...]:
    return tuple((f["name"], *_TEXT_LIMITS.get(f["name"], _DEFAULT_LIMIT))
                 for f in fields if _is_text(f["type"]))


@cache
def _rules(name: str) -> tuple[tuple[TextRule, ...], tuple[TextRule, ...]]:
    """(top-level text rules, ``contact`` text rules) of an event type."""
    fields = current_schema(name)["fields"]
    contact: tuple[TextRule, ...] = ()
    for f in fields:
        if f["name"] == "contact":
            record = next(t for t in f["type"] if isinstance(t, dict))
            contact = _text_rules(record["fields"])
    return _text_rules(fields), contact


@cache
def reason_symbols() -> tuple[str, ...]:
    """The dissatisfaction reasons of the current SurveyAnswered schema, in its order."""
    for f in current_schema("survey_answered")["fields"]:
        if f["name"] == "dissatisfaction_reason":
            enum = next(t for t in f["type"] if isinstance(t, dict))
            return tuple(enum["symbols"])
    raise KeyError("survey_answered has no dissatisfaction_reason")


def _check_answer(name: str, record: Record) -> None:
    """An answer says something, and its reason goes with a disagreeing answer (and, for the
    reopen reason, with a reopen request): what the survey page sends, nothing else."""
    satisfaction, reason = record.get("satisfaction"), record.get("dissatisfaction_reason")
    if satisfaction is None and not record.get("reopen_requested") \
            and not record.get("feedback"):
        raise ValidationError(f"{name}: an answer with no rating, no reopen and no feedback")
    if reason is None:
        return
    if reason not in reason_symbols():
        raise ValidationError(f"{name}.dissatisfaction_reason: unknown reason {reason!r}")
    if satisfaction not in DISAGREEING:
        raise ValidationError(f"{name}.dissatisfaction_reason: given with satisfaction "
                              f"{satisfaction!r}; only an answer that disagrees has a reason")
    if reason == REOPEN_REASON and not record.get("reopen_requested"):
        raise ValidationError(f"{name}.dissatisfaction_reason: {REOPEN_REASON} is a reopen "
                              "request, but reopen_requested is false")


def _check_text(name: str, record: Record, rules: tuple[TextRule, ...]) -> None:
    for field, required, limit in rules:
        value = record.get(field)
        if value is None:
            if required:
                raise ValidationError(f"{name}.{field}: required")
            continue
        if len(value) > limit:
            raise ValidationError(f"{name}.{field}: {len(value)} characters, at most {limit}")
        if "\x00" in value:
            raise ValidationError(f"{name}.{field}: contains a NUL character")
        if required and not value.strip():
            raise ValidationError(f"{name}.{field}: must not be empty")


def validate(name: str, record: Record) -> Record:
    """Return ``record`` unchanged if it satisfies the rules; raise :class:`ValidationError`.

    ``occurred_at`` may be a ``datetime`` or, decoded without logical types, milliseconds."""
    occurred_at = record.get("occurred_at")
    if occurred_at.__class__ is int:
        in_range = EARLIEST_MS <= occurred_at < LATEST_MS
    else:
        in_range = isinstance(occurred_at, datetime) and EARLIEST <= occurred_at < LATEST
    if not in_range:
        raise ValidationError(f"{name}.occurred_at: {occurred_at!r} outside 2000–2100")
    top, contact_rules = _rules(name)
    _check_text(name, record, top)
    contact = record.get("contact")
    if contact is not None:
        _check_text(name, contact, contact_rules)
        email = contact.get("email")
        if email is not None and "@" not in email:
            raise ValidationError(f"{name}.contact.email: not an email address")
    sealed = record.get("sealed_contact")
    if sealed is not None and not SEALED_MIN <= len(sealed["ciphertext"]) <= SEALED_MAX:
        raise ValidationError(f"{name}.sealed_contact.ciphertext: {len(sealed['ciphertext'])} "
                              f"bytes, expected {SEALED_MIN} to {SEALED_MAX}")
    if name == "survey_answered":
        _check_answer(name, record)
    return record
