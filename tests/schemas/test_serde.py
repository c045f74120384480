"""Avro serde: round trips, schema evolution and Confluent wire format."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from schemas.serde import (
    EVENT_TYPES,
    SCHEMA_DIR,
    DecodeError,
    EncodeError,
    Serde,
    _schema_fingerprint,
    confluent_frame,
    current_schema,
    history_files,
)
from schemas.validate import ValidationError, reason_symbols, validate

NOW = datetime(2026, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)

SAMPLES = {
    "request_created": {
        "event_id": str(uuid.uuid4()), "occurred_at": NOW, "request_id": "59000001",
        "agency": "HPD", "agency_name": "Department of Housing Preservation and Development",
        "complaint_type": "HEAT/HOT WATER", "descriptor": "ENTIRE BUILDING", "channel": "ONLINE",
        "borough": "BRONX", "incident_zip": "10458", "language": "es",
        "contact": {"email": "vecina@example.com", "phone": None},
        "sealed_contact": {"key_id": str(uuid.uuid4()), "ciphertext": bytes(range(60))},
    },
    "request_closed": {
        "event_id": str(uuid.uuid4()), "occurred_at": NOW, "request_id": "59000001",
        "status": "RESOLVED", "resolution_description": "Heat was restored.",
    },
    "survey_sent": {
        "event_id": str(uuid.uuid4()), "occurred_at": NOW, "request_id": "59000001",
        "survey_id": str(uuid.uuid4()), "channel": "EMAIL", "language": "es",
        "closure_event_id": str(uuid.uuid4()),
    },
    "survey_answered": {
        "event_id": str(uuid.uuid4()), "occurred_at": NOW, "request_id": "59000001",
        "survey_id": str(uuid.uuid4()), "language": "es", "satisfaction": "STRONGLY_DISAGREE",
        "reopen_requested": True, "feedback": "Todavía no hay calefacción — 暖气",
        "dissatisfaction_reason": "NOT_CORRECTED_REOPEN",
    },
    "reopen_requested": {
        "event_id": str(uuid.uuid4()), "occurred_at": NOW, "request_id": "59000001",
        "survey_id": str(uuid.uuid4()), "agency": "HPD", "complaint_type": "HEAT/HOT WATER",
        "feedback": None,
    },
}


def normalised(record: dict) -> dict:
    return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in record.items()}


def test_every_schema_file_is_covered():
    assert {p.stem for p in SCHEMA_DIR.glob("*.avsc")} == set(EVENT_TYPES) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_round_trip(name):
    serde = Serde()
    data = serde.encode(name, SAMPLES[name])
    assert data[:2] == b"\xc3\x01"
    assert normalised(serde.decode(name, data)) == SAMPLES[name]


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_committed_version_decodes_with_the_current_schema(name):
    files = history_files(name)
    assert files, f"schemas/history/{name}/ must keep every released version"
    current_fields = {f["name"] for f in current_schema(name)["fields"]}
    for path in files:
        writer = parse_schema(json.loads(path.read_text()))
        writer_fields = {f["name"] for f in writer["fields"]}
        record = {k: v for k, v in SAMPLES[name].items() if k in writer_fields}
        data = confluent_frame(1, name, record, writer_schema=writer)
        decoded = Serde(resolver=lambda _id, w=writer: w).decode(name, data)
        for field in current_fields - writer_fields:  # new fields must have defaults
            assert field in decoded
        assert normalised({k: decoded[k] for k in writer_fields}) == record


def test_the_latest_history_version_is_the_current_schema():
    for name in EVENT_TYPES:
        latest = parse_schema(json.loads(history_files(name)[-1].read_text()))
        assert to_parsing_canonical_form(latest) == to_parsing_canonical_form(
            current_schema(name)), f"{name}: copy the changed schema to schemas/history/{name}/"


def test_single_object_records_of_an_older_writer_are_resolved():
    """A v1 writer without `language`, read by the current schema: the field gets its default."""
    old = json.loads((SCHEMA_DIR / "request_created.avsc").read_text())
    old["fields"] = [f for f in old["fields"] if f["name"] != "language"]
    old_parsed = parse_schema(old)
    record = {k: v for k, v in SAMPLES["request_created"].items() if k != "language"}
    data = confluent_frame(7, "request_created", record, writer_schema=old)
    decoded = Serde(resolver=lambda _id: old).decode("request_created", data)
    assert decoded["language"] is None and decoded["agency"] == "HPD"
    assert _schema_fingerprint(old_parsed) != _schema_fingerprint(current_schema("request_created"))


def test_an_incompatible_writer_is_refused():
    """Removing a field the reader needs without a default breaks decoding: a DLQ case."""
    broken = json.loads((SCHEMA_DIR / "request_closed.avsc").read_text())
    broken["fields"] = [f for f in broken["fields"] if f["name"] != "status"]
    record = {k: v for k, v in SAMPLES["request_closed"].items() if k != "status"}
    data = confluent_frame(9, "request_closed", record, writer_schema=broken)
    with pytest.raises(DecodeError):
        Serde(resolver=lambda _id: broken).decode("request_closed", data)


def test_confluent_wire_format_with_the_current_schema():
    data = confluent_frame(42, "survey_answered", SAMPLES["survey_answered"])
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 42
    calls = []
    schema = json.loads((SCHEMA_DIR / "survey_answered.avsc").read_text())
    serde = Serde(resolver=lambda i: calls.append(i) or schema)
    assert normalised(serde.decode("survey_answered", data)) == SAMPLES["survey_answered"]
    serde.decode("survey_answered", data)
    assert calls == [42]  # fetched once, then cached


def test_confluent_frame_without_a_registry_is_a_decode_error():
    with pytest.raises(DecodeError, match="no SCHEMA_REGISTRY_URL"):
        Serde().decode("request_closed", confluent_frame(3, "request_closed",
                                                         SAMPLES["request_closed"]))


@pytest.mark.parametrize("data", [b"", b"{}", b"\xc3\x01\x00\x00", b"\xc3\x01" + b"\x01" * 8,
                                  b"\x00\x00"])
def test_garbage_is_a_decode_error(data):
    with pytest.raises(DecodeError):
        Serde().decode("request_created", data)


def test_trailing_bytes_are_a_decode_error():
    data = Serde().encode("request_closed", SAMPLES["request_closed"]) + b"\x00"
    with pytest.raises(DecodeError, match="trailing"):
        Serde().decode("request_closed", data)


def test_a_record_that_does_not_fit_is_refused_before_kafka():
    with pytest.raises(EncodeError):
        Serde().encode("request_closed", dict(SAMPLES["request_closed"], status="REOPENED"))


@pytest.mark.parametrize("change", [
    {"request_id": ""},
    {"request_id": "x" * 65},
    {"complaint_type": "HEAT\x00"},
    {"occurred_at": datetime(1999, 12, 31, tzinfo=UTC)},
    {"contact": {"email": "not-an-address", "phone": None}},
])
def test_validation_rules(change):
    with pytest.raises(ValidationError):
        validate("request_created", dict(SAMPLES["request_created"], **change))


def test_an_empty_answer_is_invalid_and_a_full_one_valid():
    assert validate("survey_answered", SAMPLES["survey_answered"])
    with pytest.raises(ValidationError, match="no rating"):
        validate("survey_answered", dict(SAMPLES["survey_answered"], satisfaction=None,
                                         reopen_requested=False, feedback=None))


def _history(name: str, version: int) -> dict:
    return json.loads((SCHEMA_DIR / "history" / name / f"v{version}.avsc").read_text())


def _written(schema: dict, record: dict) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), record)
    return out.getvalue()


def test_an_answer_of_v1_reads_with_the_current_schema_without_a_reason():
    """Every answer given before the reason question: single-object encoded by a v1 writer,
    decoded by today's Serde (the projector's and the forwarder's), the reason empty."""
    v1 = _history("survey_answered", 1)
    record = {k: v for k, v in SAMPLES["survey_answered"].items()
              if k != "dissatisfaction_reason"}
    parsed = parse_schema(v1)
    data = b"\xc3\x01" + _schema_fingerprint(parsed) + _written(v1, record)
    for serde in (Serde(), Serde(logical_types=False)):
        decoded = serde.decode("survey_answered", data)
        assert decoded["dissatisfaction_reason"] is None
        assert decoded["satisfaction"] == "STRONGLY_DISAGREE"
        assert decoded["reopen_requested"] is True
    assert validate("survey_answered", Serde().decode("survey_answered", data))


def test_an_answer_with_a_reason_reads_with_the_v1_schema():
    """The reverse (forward compatibility): a consumer still on v1, given the writer schema (as
    a registry gives it), reads a v2 answer as the same answer without the new field."""
    current = json.loads((SCHEMA_DIR / "survey_answered.avsc").read_text())
    v1 = parse_schema(_history("survey_answered", 1))
    body = io.BytesIO(_written(current, SAMPLES["survey_answered"]))
    old = schemaless_reader(body, parse_schema(current), v1)
    assert "dissatisfaction_reason" not in old
    assert normalised(old) == {k: v for k, v in SAMPLES["survey_answered"].items()
                               if k != "dissatisfaction_reason"}


def test_a_reason_added_later_reads_as_other():
    """The enum's default: a writer with a reason this version does not know yet (a later
    schema, from a registry) is read as OTHER, not refused."""
    later = json.loads((SCHEMA_DIR / "survey_answered.avsc").read_text())
    enum = next(t for t in later["fields"][-1]["type"] if isinstance(t, dict))
    enum["symbols"] = [*enum["symbols"], "A_LATER_REASON"]
    record = dict(SAMPLES["survey_answered"], dissatisfaction_reason="A_LATER_REASON")
    data = confluent_frame(11, "survey_answered", record, writer_schema=later)
    decoded = Serde(resolver=lambda _id: later).decode("survey_answered", data)
    assert decoded["dissatisfaction_reason"] == "OTHER"


def test_the_reasons_are_an_enum_with_other_as_its_default():
    field = next(f for f in current_schema("survey_answered")["fields"]
                 if f["name"] == "dissatisfaction_reason")
    assert field["default"] is None and field["type"][0] == "null"
    enum = field["type"][1]
    assert enum["type"] == "enum" and enum["default"] == "OTHER"
    assert tuple(enum["symbols"]) == reason_symbols() and len(reason_symbols()) == 8


@pytest.mark.parametrize(("change", "error"), [
    ({"dissatisfaction_reason": "NOT_A_REASON"}, "unknown reason"),
    ({"satisfaction": "AGREE"}, "only an answer that disagrees"),
    ({"satisfaction": None}, "only an answer that disagrees"),
    ({"reopen_requested": False}, "is a reopen request"),
])
def test_a_reason_that_does_not_fit_the_answer_is_invalid(change, error):
    with pytest.raises(ValidationError, match=error):
        validate("survey_answered", dict(SAMPLES["survey_answered"], **change))


def test_an_unknown_reason_is_refused_on_the_wire_too():
    with pytest.raises(EncodeError):
        Serde().encode("survey_answered",
                       dict(SAMPLES["survey_answered"], dissatisfaction_reason="NOT_A_REASON"))
    data = bytearray(Serde().encode("survey_answered", SAMPLES["survey_answered"]))
    assert data[-1] == 2  # union branch 1, then the enum index: NOT_CORRECTED_REOPEN is 1
    data[-1] = 2 * 40  # an index past the last reason
    with pytest.raises(DecodeError):
        Serde().decode("survey_answered", bytes(data))


@pytest.mark.parametrize("reason", reason_symbols())
def test_every_reason_is_valid_with_a_disagreeing_answer(reason):
    record = dict(SAMPLES["survey_answered"], dissatisfaction_reason=reason,
                  satisfaction="DISAGREE", reopen_requested=reason == "NOT_CORRECTED_REOPEN")
    assert validate("survey_answered", record)
    assert normalised(Serde().decode("survey_answered",
                                     Serde().encode("survey_answered", record))) == record


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_decoding_without_logical_types_gives_the_wire_values(name):
    """What the projector reads: uuids as their strings, timestamps as milliseconds."""
    data = Serde().encode(name, SAMPLES[name])
    typed, plain = Serde().decode(name, data), Serde(logical_types=False).decode(name, data)
    assert set(plain) == set(typed)
    for field, value in typed.items():
        if isinstance(value, uuid.UUID):
            assert plain[field] == str(value)
        elif isinstance(value, datetime):
            assert plain[field] == round(value.timestamp() * 1000)
        else:
            assert plain[field] == value
    # same wire format: the plain Serde encodes bytes the typed one reads
    assert Serde().decode(name, Serde(logical_types=False).encode(name, SAMPLES[name])) == typed


def test_validation_takes_milliseconds_as_the_projector_decodes_them():
    ms = round(datetime(2026, 3, 1, tzinfo=UTC).timestamp() * 1000)
    assert validate("request_closed", dict(SAMPLES["request_closed"], occurred_at=ms))
    too_early = round(datetime(1999, 12, 31, tzinfo=UTC).timestamp() * 1000)
    with pytest.raises(ValidationError, match="outside"):
        validate("request_closed", dict(SAMPLES["request_closed"], occurred_at=too_early))
