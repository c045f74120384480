"""The compiled writer writes fastavro's bytes, and hands fastavro every record it does not
cover; generated records of every event schema, valid and not, both ways."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.fastwrite import Unsupported, compile_writer, zigzag_long
from schemas.serde import EVENT_TYPES, EncodeError, Serde, current_schema

_TEXT = st.text(max_size=80)  # any code point, surrogates included: fastavro's error then
_ODD = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.binary(max_size=4),
                 st.booleans(), st.text(max_size=3), st.just([]))


def _values(schema: Any, odd: bool) -> st.SearchStrategy[Any]:
    """Values of ``schema``; with ``odd``, sometimes a value of another type."""
    valid = _valid(schema, odd)
    return st.one_of(valid, valid, valid, _ODD) if odd else valid


def _valid(schema: Any, odd: bool) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        return st.one_of(*(_values(branch, odd) for branch in schema))
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = None if isinstance(schema, str) else schema.get("logicalType")
    if kind == "null":
        return st.none()
    if kind == "string" and logical == "uuid":
        return st.one_of(st.uuids().map(str), st.uuids())
    if kind == "long" and logical == "timestamp-millis":
        zones = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))])
        return st.one_of(st.datetimes(min_value=datetime(1900, 1, 1), timezones=zones),
                         st.integers(-(2**62), 2**62))
    if kind == "string":
        return _TEXT
    if kind == "bytes":
        return st.binary(max_size=90)
    if kind in ("long", "int"):
        bits = 63 if kind == "long" else 31
        return st.integers(-(2**bits), 2**bits - 1)
    if kind == "boolean":
        return st.booleans()
    if kind == "double":
        return st.floats(allow_nan=False)
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "record":
        fields = {f["name"]: _values(f["type"], odd) for f in schema["fields"]}
        records = st.fixed_dictionaries(fields)
        if odd:  # now and then a field left out (fastavro applies its default, or refuses)
            return records.flatmap(lambda r: st.sets(st.sampled_from(sorted(r) or [""]),
                                                     max_size=1).map(
                lambda gone: {k: v for k, v in r.items() if k not in gone}))
        return records
    raise AssertionError(f"a schema type the test does not generate: {kind}")


def _fastavro(name: str, record: dict[str, Any]) -> bytes | type[Exception]:
    out = io.BytesIO()
    try:
        schemaless_writer(out, current_schema(name), record)
    except Exception as exc:  # whatever fastavro raises, Serde must raise too
        return type(exc)
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_the_compiled_writer_writes_fastavros_bytes(name: str, data: st.DataObject) -> None:
    writer = compile_writer(current_schema(name))
    assert writer is not None, "every event schema is covered"
    record = data.draw(_values(current_schema(name), odd=False))
    expected = _fastavro(name, record)
    try:
        got: bytes | type[Exception] = writer(record)
    except Unsupported:
        return  # handed to fastavro: checked below, through Serde
    assert got == expected


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_serde_encodes_as_fastavro_or_refuses_as_it_does(name: str, data: st.DataObject) -> None:
    record = data.draw(_values(current_schema(name), odd=True))
    expected = _fastavro(name, record)
    serde = Serde()
    if isinstance(expected, bytes):
        assert serde.encode(name, record)[10:] == expected
    else:
        with pytest.raises((EncodeError, Exception)):
            serde.encode(name, record)


def test_values_it_leaves_to_fastavro() -> None:
    writer = compile_writer(current_schema("request_closed"))
    assert writer is not None
    base = {"event_id": str(uuid.uuid4()), "occurred_at": datetime(2024, 1, 1, tzinfo=UTC),
            "request_id": "1", "status": "CLOSED", "resolution_description": None}
    assert writer(base) == _fastavro("request_closed", base)
    for odd in ({"event_id": uuid.uuid4()},  # a UUID object: fastavro prints it
                {"occurred_at": datetime(2024, 1, 1)},  # naive: fastavro's local-time rule
                {"status": "REOPENED_LATER"},  # not a symbol
                {"request_id": "\udcff"},  # a lone surrogate
                {"resolution_description": 7}):
        with pytest.raises(Unsupported):
            writer({**base, **odd})
    with pytest.raises(Unsupported):
        writer({k: v for k, v in base.items() if k != "resolution_description"})


def test_unsupported_schemas_are_not_compiled() -> None:
    assert compile_writer({"type": "record", "name": "M", "fields": [
        {"name": "m", "type": {"type": "map", "values": "string"}}]}) is None
    assert compile_writer({"type": "record", "name": "U", "fields": [
        {"name": "u", "type": ["string", "long"]}]}) is None


@given(st.integers(-(2**63), 2**63 - 1))
def test_zigzag_long_is_avros(n: int) -> None:
    out = io.BytesIO()
    schemaless_writer(out, {"type": "long"}, n)
    assert zigzag_long(n) == out.getvalue()


def test_every_event_of_the_real_export_takes_the_compiled_path() -> None:
    from pathlib import Path

    from producers.nyc_csv import read_nyc_csv

    export = (Path(__file__).resolve().parents[3] / "shared" / "data" / "nyc311"
              / "311_Service_Requests.csv")
    if not export.is_file():
        pytest.skip(f"NYC 311 sample data not found in {export.parent}")
    written = 0
    for result in read_nyc_csv(export):
        for name, record in (("request_created", result.created),
                             ("request_closed", result.closed)):
            if record is not None:
                writer = compile_writer(current_schema(name))
                assert writer is not None
                assert writer(record) == _fastavro(name, record)  # never Unsupported
                written += 1
    assert written == 1000 + 969
