"""The projector against the real broker and database: exact rows, order independence, DLQ."""

from __future__ import annotations

import io
import random
import uuid
from datetime import datetime, timedelta

import pytest
from confluent_kafka import Consumer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from consumers.dlq import (
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
)
from nyc311.kafka import EventProducer
from nyc311.topics import all_topics, dlq_topic, ensure_topics
from producers.simulate import simulate_month
from tests.conftest import clone_database, drop_database
from tests.helpers import (
    conflicting_versions,
    expected_tables,
    fetch_tables,
    produce,
    project,
    survey_events,
)

pytestmark = pytest.mark.integration


def month_events(requests: int = 300, seed: int = 5) -> list[tuple[str, dict]]:
    events = list(simulate_month("2026-03", requests, seed))
    created = [e for e in events if e[0] == "request_created"]
    return events + survey_events(created, seed)


def read_all(settings, topic: str, expected: int, timeout: float = 30.0) -> list:
    consumer = Consumer(settings.kafka_config(**{
        "group.id": f"reader-{uuid.uuid4()}", "auto.offset.reset": "earliest",
        "enable.auto.commit": False}))
    consumer.subscribe([topic])
    out: list = []
    deadline = datetime.now() + timedelta(seconds=timeout)
    try:
        while len(out) < expected and datetime.now() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    return out


def test_produced_events_become_exactly_the_expected_rows(settings, topics, db):
    events = month_events()
    produce(settings, events)
    stats = project(settings)

    assert stats.records == len(events)
    assert stats.dead_lettered == 0
    expected = expected_tables(events)
    actual = fetch_tables(db)
    for table in expected:
        assert actual[table] == expected[table], table
    assert len(actual["requests"]) == 300
    assert actual["contacts"] and actual["closures"] and actual["survey_answers"]
    stored = db.execute("SELECT sum(next_offset) FROM consumer_offsets").fetchone()[0]
    assert stored == len(events)


def test_running_again_changes_nothing(settings, topics, db):
    events = month_events(120, seed=9)
    produce(settings, events)
    project(settings)
    first = fetch_tables(db)
    stats = project(settings, max_seconds=20)  # resumes from the stored offsets: nothing to do
    assert stats.records == 0
    assert fetch_tables(db) == first


@hsettings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
           suppress_health_check=[HealthCheck.function_scoped_fixture,
                                  HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), dup_rate=st.floats(0.0, 1.0))
def test_duplicated_and_shuffled_events_give_identical_tables(base_settings, template_database,
                                                              seed, dup_rate):
    events = month_events(60, seed=11)
    events += conflicting_versions(events)
    rng = random.Random(seed)
    noisy = events + [e for e in events if rng.random() < dup_rate]
    rng.shuffle(noisy)

    settings = clone_database(base_settings, template_database)
    try:
        ensure_topics(settings, all_topics(settings), partitions=3)
        produce(settings, noisy)
        project(settings)
        from storage.db import connect

        with connect(settings) as conn:
            actual = fetch_tables(conn)
    finally:
        drop_database(base_settings, settings)
    assert actual == expected_tables(events)


def test_a_closed_event_before_its_created_event_is_kept(settings, topics, db):
    created = next(e for e in month_events(5, seed=3) if e[0] == "request_created")[1]
    closed = {"event_id": str(uuid.uuid4()), "occurred_at": created["occurred_at"] +
              timedelta(hours=2), "request_id": created["request_id"], "status": "RESOLVED",
              "resolution_description": "Fixed."}
    produce(settings, [("request_closed", closed)])
    project(settings)
    assert db.execute("SELECT count(*) FROM closures").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 0
    produce(settings, [("request_created", created)])
    project(settings)
    row = db.execute("SELECT r.agency, c.status FROM requests r JOIN closures c "
                     "USING (request_id)").fetchone()
    assert row == (created["agency"], "RESOLVED")


def test_malformed_records_go_to_the_dlq_and_the_rest_is_projected(settings, topics, db):
    events = month_events(40, seed=21)
    topic = settings.topic("nyc311.request-created")
    bad_values = [b"not avro at all", b"\xc3\x01" + b"\x00" * 8 + b"garbage", b""]
    with EventProducer(settings) as producer:
        for name, record in events[:20]:
            producer.send(name, record)
        for value in bad_values:
            producer.produce_raw(topic, b"bad-key", value)
        # decodes, but breaks a rule: an empty request id
        bad_rule = dict(events[0][1], request_id="", event_id=str(uuid.uuid4()))
        producer.produce_raw(topic, b"", producer.serde.encode("request_created", bad_rule))
        for name, record in events[20:]:
            producer.send(name, record)

    stats = project(settings)
    assert stats.dead_lettered == 4
    assert fetch_tables(db) == expected_tables(events)

    dead = read_all(settings, dlq_topic(topic), expected=4)
    assert sorted(m.value() or b"" for m in dead) == sorted(
        [*bad_values, EventProducer(settings).serde.encode("request_created", bad_rule)])
    for msg in dead:
        headers = dict(msg.headers())
        assert headers[HEADER_SOURCE_TOPIC].decode() == topic
        assert int(headers[HEADER_SOURCE_PARTITION]) >= 0
        assert int(headers[HEADER_SOURCE_OFFSET]) >= 0
        assert headers[HEADER_ERROR_CLASS] in (b"DecodeError", b"ValidationError")
    assert [m.key() for m in dead].count(b"bad-key") == 3  # the original key is kept


def test_a_malformed_uuid_is_refused_by_postgresql_and_dead_lettered_alone(settings, topics, db):
    """The projector decodes uuids as strings; the uuid column is what refuses a bad one."""
    from fastavro import schemaless_writer

    from schemas.serde import SINGLE_OBJECT_MAGIC, current_fingerprint, current_schema

    events = month_events(30, seed=22)
    bad = dict(events[0][1], event_id="not-a-uuid", request_id="bad-uuid-1")
    body = io.BytesIO()
    body.write(SINGLE_OBJECT_MAGIC + current_fingerprint("request_created"))
    schemaless_writer(body, current_schema("request_created", logical_types=False),
                      dict(bad, occurred_at=int(bad["occurred_at"].timestamp() * 1000)))
    topic = settings.topic("nyc311.request-created")
    with EventProducer(settings) as producer:
        for name, record in events[:10]:
            producer.send(name, record)
        producer.produce_raw(topic, b"bad-uuid-1", body.getvalue())
        for name, record in events[10:]:
            producer.send(name, record)

    stats = project(settings)
    assert stats.dead_lettered == 1
    assert fetch_tables(db) == expected_tables(events)
    (dead,) = read_all(settings, dlq_topic(topic), expected=1)
    assert dead.value() == body.getvalue()
    assert dict(dead.headers())[HEADER_ERROR_CLASS] == b"InvalidTextRepresentation"
