"""kill -9 at any moment loses nothing and doubles nothing: the projector as a real process."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumers.projector import GROUP_ID
from tests.consumers.test_projector import month_events
from tests.helpers import (
    expected_tables,
    fetch_tables,
    produce,
    start_projector,
    stored_offsets,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_sigkill_mid_stream_then_restart_gives_exactly_the_expected_rows(settings, topics, db,
                                                                         tmp_path):
    events = month_events(3000, seed=13)
    produce(settings, events)
    total = len(events)

    first = start_projector(settings, tmp_path / "first.log", 50)
    try:
        wait_until(lambda: stored_offsets(settings) >= total // 5, 90,
                   "the projector to make progress", [first], interval=0.05)
    finally:
        first.kill()
    progress = stored_offsets(settings)
    assert 0 < progress < total, "killed mid-stream, not before or after"

    second = start_projector(settings, tmp_path / "second.log", 500,
                             "--until-caught-up", "--max-seconds", "120")
    assert second.wait(150) == 0, second.output()

    assert stored_offsets(settings) == total
    actual = fetch_tables(db)
    expected = expected_tables(events)
    for table in expected:
        assert actual[table] == expected[table], table


def test_sigterm_finishes_the_batch_and_exits_cleanly(settings, topics, db, tmp_path):
    events = month_events(1500, seed=17)
    produce(settings, events)
    projector = start_projector(settings, tmp_path / "projector.log", 100)
    try:
        wait_until(lambda: stored_offsets(settings) > 0, 90, "the projector to commit a batch",
                   [projector], interval=0.05)
        code = projector.stop(30)
    finally:
        projector.kill()
    out = projector.output()
    assert code == 0, out
    assert "stopping after the current batch" in out
    stored = {(t, p): o for t, p, o in db.execute(
        "SELECT topic, partition, next_offset FROM consumer_offsets").fetchall()}
    assert 0 < sum(stored.values()) <= len(events)
    # the last thing before closing: Kafka got the same offsets PostgreSQL holds
    reader = Consumer(settings.kafka_config(**{"group.id": settings.group(GROUP_ID)}))
    try:
        committed = reader.committed([TopicPartition(t, p) for t, p in stored], timeout=10)
    finally:
        reader.close()
    assert {(tp.topic, tp.partition): tp.offset for tp in committed} == stored
