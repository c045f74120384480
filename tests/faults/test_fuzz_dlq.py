"""A flood of garbage between valid records: every bad record in the DLQ, every good one projected.

1,000 fuzzed records (random bytes, another event's schema, fields missing, values over the
validation limits, wrong magic bytes, truncated Avro) are mixed between valid events on the four
projected topics. Each is checked here to be refused by the projector's decoder before it is
sent, so the test cannot pass by accident. Then ``nyc311 dlq replay`` sends them back: the
tables do not change, the records are dead-lettered again, and nothing is replayed twice.
"""

from __future__ import annotations

import io
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastavro import schemaless_writer

from consumers.projector import Projector
from nyc311.kafka import EventProducer
from operations.dlq.letters import list_dead_letters
from schemas.serde import EVENT_TYPES, SINGLE_OBJECT_MAGIC, DecodeError, current_fingerprint
from schemas.serde import current_schema as schema_of
from storage.db import connect
from tests.consumers.test_projector import month_events
from tests.helpers import expected_tables, fetch_tables, project, run_cli

pytestmark = pytest.mark.integration

PROJECTED = ("request_created", "request_closed", "survey_sent", "survey_answered")
KINDS = ("random_bytes", "wrong_schema", "missing_fields", "oversized", "wrong_magic",
         "truncated")


@dataclass(frozen=True)
class Stub:
    """Just enough of a Kafka message for the projector's decoder."""

    _topic: str
    _key: bytes | None
    _value: bytes | None

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


def _encode(producer: EventProducer, name: str, record: dict[str, Any]) -> bytes:
    return producer.serde.encode(name, record)


def _prefix_body(name: str, record: dict[str, Any], keep: int) -> bytes:
    """The body of the schema's first ``keep`` fields only: the rest are missing."""
    schema = dict(schema_of(name))
    schema["fields"] = schema["fields"][:keep]
    schema["name"] = schema["name"] + "Prefix"
    out = io.BytesIO()
    schemaless_writer(out, schema, {f["name"]: record[f["name"]] for f in schema["fields"]})
    return SINGLE_OBJECT_MAGIC + current_fingerprint(name) + out.getvalue()


def fuzz(kind: str, name: str, record: dict[str, Any], other: tuple[str, dict[str, Any]],
         producer: EventProducer, rng: random.Random) -> tuple[bytes | None, bytes | None]:
    """(key, value) of one bad record of ``kind`` for ``name``'s topic."""
    key = str(record["request_id"]).encode()
    good = _encode(producer, name, record)
    if kind == "random_bytes":
        return rng.randbytes(rng.randint(1, 8)), rng.randbytes(rng.randint(0, 300))
    if kind == "wrong_schema":  # a valid record of another event type
        return key, _encode(producer, *other)
    if kind == "missing_fields":
        if rng.random() < 0.5:  # required strings blank
            blank = "agency" if name == "request_created" else "request_id"
            return key, _encode(producer, name, dict(record, **{blank: "  "}))
        fields = len(schema_of(name)["fields"])
        return key, _prefix_body(name, record, rng.randint(1, fields - 1))
    if kind == "oversized":
        field, limit = {"request_created": ("complaint_type", 200),
                        "request_closed": ("resolution_description", 10_000),
                        "survey_sent": ("request_id", 64),
                        "survey_answered": ("feedback", 5_000)}[name]
        value = "x" * (limit + rng.randint(1, 5_000))
        bigger = dict(record, **{field: value})
        return (value.encode() if field == "request_id" else key), _encode(producer, name, bigger)
    if kind == "wrong_magic":
        magic = rng.choice([b"\xc3\x02", b"\xc2\x01", b"\x01\x00", b"{\""])
        return key, magic + good[2:]
    if kind == "truncated":
        return key, good[: rng.randint(10, len(good) - 1)]
    raise ValueError(kind)


def mixed_stream(settings, seed: int = 311) -> tuple[list, list, list]:
    """Valid events with 1,000 bad records between them, in one stream; and each part."""
    rng = random.Random(seed)
    valid = month_events(400, seed=seed)
    by_name: dict[str, list[dict[str, Any]]] = {n: [r for e, r in valid if e == n]
                                                for n in PROJECTED}
    decoder = Projector(settings)
    producer = EventProducer(settings)
    bad: list[tuple[str, bytes | None, bytes | None, str]] = []
    while len(bad) < 1000:
        kind = KINDS[len(bad) % len(KINDS)]
        name = rng.choice(PROJECTED)
        record = dict(rng.choice(by_name[name]), event_id=str(uuid.uuid4()))
        record["occurred_at"] += timedelta(seconds=rng.randint(0, 1000))
        other_name = rng.choice([n for n in PROJECTED if n != name])
        other = (other_name, rng.choice(by_name[other_name]))
        key, value = fuzz(kind, name, record, other, producer, rng)
        topic = settings.topic(EVENT_TYPES[name].topic)
        with pytest.raises(DecodeError):  # the projector must refuse it, or the test is wrong
            decoder.decode(Stub(topic, key, value))
        bad.append((topic, key, value, kind))
    stream: list[tuple[str, Any]] = [("valid", e) for e in valid]
    for item in bad:
        stream.insert(rng.randint(0, len(stream)), ("bad", item))
    return stream, valid, bad


def send(settings, stream) -> None:
    with EventProducer(settings) as producer:
        for what, item in stream:
            if what == "valid":
                producer.send(*item)
            else:
                topic, key, value, _kind = item
                producer.produce_raw(topic, key, value)


def test_a_flood_of_garbage_is_dead_lettered_and_replayed_without_effect(private_settings):
    settings = private_settings
    stream, valid, bad = mixed_stream(settings)
    assert Counter(kind for *_, kind in bad) == {kind: 1000 // 6 + (i < 1000 % 6)
                                                 for i, kind in enumerate(KINDS)}
    send(settings, stream)

    stats = project(settings)
    assert stats.dead_lettered == 1000
    assert stats.records == len(valid)
    with connect(settings) as conn:
        tables = fetch_tables(conn)
    assert tables == expected_tables(valid)

    letters = list(list_dead_letters(settings))
    assert len(letters) == 1000
    assert Counter((d.source_topic, d.value) for d in letters) == \
        Counter((topic, value) for topic, _, value, _ in bad)
    assert len({d.source_id for d in letters}) == 1000
    assert {d.error_class for d in letters} <= {"DecodeError", "ValidationError"}

    listed = run_cli(settings, "dlq", "list", "--json", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 5 and all(r["source_offset"] is not None for r in rows)

    replayed = 0
    for name in PROJECTED:
        done = run_cli(settings, "dlq", "replay", "--topic", EVENT_TYPES[name].topic)
        assert done.returncode == 0, done.stderr
        replayed += int(done.stdout.split(" replayed ")[1].split(" of ")[0].replace(",", ""))
        again = run_cli(settings, "dlq", "replay", "--topic", EVENT_TYPES[name].topic)
        assert again.returncode == 0, again.stderr
        assert " replayed 0 of " in again.stdout, again.stdout  # once each
    assert replayed == 1000

    started = time.monotonic()
    stats = project(settings, max_seconds=60)  # the replayed records fail again: to the DLQ
    # caught up, not timed out: the topics end with the replay's transaction markers
    assert time.monotonic() - started < 30
    assert stats.dead_lettered == 1000
    assert stats.records == 0
    with connect(settings) as conn:
        assert fetch_tables(conn) == tables

    letters = list(list_dead_letters(settings))
    assert len(letters) == 2000
    first = {d.source_id: d for d in letters if d.replay_of is None}
    second = [d for d in letters if d.replay_of is not None]
    assert len(first) == len(second) == 1000
    assert {d.replay_of for d in second} == set(first)  # each original came back once
    for d in second:
        original = first[d.replay_of or ""]
        assert (d.source_topic, d.key, d.value, d.error_class) == \
            (original.source_topic, original.key, original.value, original.error_class)
        assert d.source_offset != original.source_offset  # a new record, with new headers


def test_replay_filters_and_limits_never_replay_a_record_twice(private_settings):
    settings = private_settings
    topic = settings.topic(EVENT_TYPES["request_created"].topic)
    created = [r for n, r in month_events(30, seed=5) if n == "request_created"][:10]
    with EventProducer(settings) as producer:
        for i, record in enumerate(created):  # one key: one partition, in this order
            if i % 3 == 0:  # ValidationError: a blank agency
                value = producer.serde.encode("request_created", dict(record, agency=" "))
            else:  # DecodeError
                value = b"junk %d" % i
            producer.produce_raw(topic, b"same-key", value)
    assert project(settings).dead_lettered == 10

    def replay(*args: str) -> str:
        done = run_cli(settings, "dlq", "replay", "--topic", "nyc311.request-created", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert " would replay 4 of 10" in replay("--dry-run", "--where-error-class",
                                             "ValidationError")
    assert " replayed 2 of " in replay("--where-error-class", "ValidationError", "--limit", "2")
    assert " replayed 2 of " in replay("--where-error-class", "ValidationError")
    assert " replayed 6 of " in replay()  # the DecodeErrors; the rest were replayed already
    assert " replayed 0 of " in replay()

    started = time.monotonic()
    stats = project(settings, max_seconds=60)
    assert time.monotonic() - started < 30  # caught up despite the transaction markers
    assert stats.dead_lettered == 10  # each of the ten came back exactly once
    letters = list(list_dead_letters(settings, "nyc311.request-created"))
    assert Counter(d.replay_of is None for d in letters) == {True: 10, False: 10}
