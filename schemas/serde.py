"""Avro encoding and decoding of the five events, on fastavro with parsed schemas cached.

Wire format written: Avro *single-object encoding* (Avro spec): ``C3 01``, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the
binary body. It is self-describing without a registry, and a reader that knows every historical
version of a schema (``schemas/history/``) resolves old records to the current reader schema.

Wire format also read: Confluent Schema Registry framing (``00`` + 4-byte big-endian schema id),
as upstream systems on Confluent serializers produce it. The writer schema is fetched once per
id from ``SCHEMA_REGISTRY_URL`` (or from a resolver the caller passes) and cached.

``Serde(logical_types=False)`` decodes the same bytes without Avro's logical types: a ``uuid``
stays the string it is on the wire and a ``timestamp-millis`` the integer it is (milliseconds
since the epoch). The projector reads that way: it hands both straight to PostgreSQL, which
parses them anyway, instead of making ``uuid.UUID`` and ``datetime`` objects only to print them
back as text (see benchmarks/README.md). Logical types do not enter the Parsing Canonical Form,
so fingerprints are the same either way.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.fastwrite import Unsupported, compile_writer

SCHEMA_DIR = Path(__file__).resolve().parent
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0

Record = dict[str, Any]


@dataclass(frozen=True)
class EventType:
    """An event of the contract: its schema file stem, Avro name and topic."""

    name: str  # schema file stem, e.g. "request_created"
    record_name: str  # Avro record name, e.g. "RequestCreated"
    topic: str  # contract topic name (before any prefix)
    key_field: str  # the field whose value keys the Kafka record


EVENT_TYPES: dict[str, EventType] = {
    e.name: e
    for e in (
        EventType("request_created", "RequestCreated", "nyc311.request-created", "request_id"),
        EventType("request_closed", "RequestClosed", "nyc311.request-closed", "request_id"),
        EventType("survey_sent", "SurveySent", "nyc311.survey-sent", "request_id"),
        EventType("survey_answered", "SurveyAnswered", "nyc311.survey-answered", "request_id"),
        EventType("reopen_requested", "ReopenRequested", "nyc311.reopen-requested", "agency"),
    )
}
BY_TOPIC: dict[str, EventType] = {e.topic: e for e in EVENT_TYPES.values()}


class DecodeError(ValueError):
    """Bytes that are not a valid record of the expected event; they belong in the DLQ."""


class EncodeError(ValueError):
    """A record that does not fit its schema; the producer refuses it before it reaches Kafka."""


def _schema_fingerprint(schema: dict[str, Any]) -> bytes:
    canonical = to_parsing_canonical_form(schema)
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


@cache
def current_schema(name: str, logical_types: bool = True) -> dict[str, Any]:
    """The parsed current schema of an event type (``schemas/<name>.avsc``); without its
    logical types when ``logical_types`` is False."""
    if name not in EVENT_TYPES:
        raise KeyError(f"unknown event type {name!r}; known: {', '.join(EVENT_TYPES)}")
    raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    return _parse(raw if logical_types else without_logical_types(raw))


def without_logical_types(schema: Any) -> Any:
    """A copy of a schema (JSON) with every ``logicalType`` annotation removed."""
    if isinstance(schema, dict):
        return {k: without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [without_logical_types(v) for v in schema]
    return schema


def _parse(raw: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_schema(raw)
    if not isinstance(parsed, dict):
        raise ValueError("an event schema must be an Avro record")
    return parsed


def history_files(name: str) -> list[Path]:
    """Every committed earlier version of a schema, oldest first."""
    folder = SCHEMA_DIR / "history" / name
    return sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))


@cache
def _writer_schemas(name: str, logical_types: bool = True) -> dict[bytes, dict[str, Any]]:
    """fingerprint -> parsed writer schema, over the current and every historical version."""
    current = current_schema(name, logical_types)
    schemas = {_schema_fingerprint(current): current}
    for path in history_files(name):
        raw = json.loads(path.read_text(encoding="utf-8"))
        parsed = _parse(raw if logical_types else without_logical_types(raw))
        schemas.setdefault(_schema_fingerprint(parsed), parsed)
    return schemas


@cache
def current_fingerprint(name: str) -> bytes:
    return _schema_fingerprint(current_schema(name))


@cache
def _frame(name: str) -> bytes:
    """The single-object header of the current schema: magic, then fingerprint."""
    return SINGLE_OBJECT_MAGIC + current_fingerprint(name)


@cache
def _fast_writer(name: str) -> Callable[[Record], bytes] | None:
    return compile_writer(current_schema(name))


SchemaResolver = Callable[[int], dict[str, Any]]


def registry_resolver(url: str) -> SchemaResolver:
    """Fetch writer schemas by id from a Confluent-compatible Schema Registry."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": url})

    def resolve(schema_id: int) -> dict[str, Any]:
        schema = client.get_schema(schema_id)
        if not schema.schema_str:
            raise ValueError(f"schema id {schema_id}: the registry returned no schema")
        loaded: dict[str, Any] = json.loads(schema.schema_str)
        return loaded

    return resolve


class Serde:
    """Encode and decode events. One instance per process; it caches schemas it has seen.

    ``logical_types=False``: decode ``uuid`` as ``str`` and ``timestamp-millis`` as ``int``
    milliseconds (encoding is unaffected)."""

    def __init__(self, resolver: SchemaResolver | None = None,
                 logical_types: bool = True) -> None:
        self._resolver = resolver
        self.logical_types = logical_types
        self._by_id: dict[int, dict[str, Any]] = {}

    def encode(self, name: str, record: Record) -> bytes:
        fast = _fast_writer(name)
        if fast is not None:
            try:
                return _frame(name) + fast(record)
            except Unsupported:
                pass  # fastavro encodes it, or says why not
        schema = current_schema(name)
        out = io.BytesIO()
        out.write(_frame(name))
        try:
            schemaless_writer(out, schema, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"{name}: {exc}") from exc
        return out.getvalue()

    def decode(self, name: str, data: bytes | None) -> Record:
        """Decode ``data`` written with any known version of ``name``'s schema."""
        if not data:
            raise DecodeError(f"{name}: empty record value")
        reader = current_schema(name, self.logical_types)
        if data[:2] == SINGLE_OBJECT_MAGIC:
            writer = _writer_schemas(name, self.logical_types).get(data[2:10])
            if writer is None:
                raise DecodeError(f"{name}: unknown writer schema fingerprint {data[2:10].hex()}")
            body = data[10:]
        elif data[0] == CONFLUENT_MAGIC and len(data) >= 5:
            writer = self._confluent_writer(name, struct.unpack(">I", data[1:5])[0])
            body = data[5:]
        else:
            raise DecodeError(f"{name}: not Avro single-object or Confluent framing "
                              f"(first bytes {data[:4].hex()})")
        try:
            buffer = io.BytesIO(body)
            if writer is reader:
                record = schemaless_reader(buffer, reader, None)
            else:
                record = schemaless_reader(buffer, writer, reader)
        except Exception as exc:  # fastavro raises many types on bad bytes
            raise DecodeError(f"{name}: {type(exc).__name__}: {exc}") from exc
        if buffer.tell() != len(body):
            raise DecodeError(f"{name}: {len(body) - buffer.tell()} trailing bytes after record")
        if not isinstance(record, dict):
            raise DecodeError(f"{name}: decoded to {type(record).__name__}, not a record")
        return record

    def _confluent_writer(self, name: str, schema_id: int) -> dict[str, Any]:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        if self._resolver is None:
            raise DecodeError(f"{name}: Confluent schema id {schema_id} but no SCHEMA_REGISTRY_URL")
        try:
            raw = self._resolver(schema_id)
            parsed = _parse(raw if self.logical_types else without_logical_types(raw))
        except Exception as exc:
            raise DecodeError(f"{name}: schema id {schema_id}: {exc}") from exc
        self._by_id[schema_id] = parsed
        return parsed


def confluent_frame(schema_id: int, name: str, record: Record,
                    writer_schema: dict[str, Any] | None = None) -> bytes:
    """Encode as a Confluent serializer would (for upstream emitters and tests)."""
    out = io.BytesIO()
    out.write(struct.pack(">bI", CONFLUENT_MAGIC, schema_id))
    schemaless_writer(out, _parse(writer_schema) if writer_schema else current_schema(name), record)
    return out.getvalue()
