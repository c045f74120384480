"""kill -9 at any moment loses nothing and doubles nothing: the projector as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from consumers.projector import GROUP_ID
from tests.consumers.test_projector import month_events
from tests.helpers import expected_tables, fetch_tables, produce

pytestmark = pytest.mark.integration


def projector_env(settings, batch_size: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "NYC311_"))}
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "NYC311_TOPIC_PREFIX": settings.topic_prefix,
        "NYC311_BATCH_SIZE": str(batch_size),
        "NYC311_BATCH_TIMEOUT": "0.2",
        # the killed member must leave the group quickly so the restart is not held up
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "NYC311_LOG_FORMAT": "text",
    })
    return env


def start_projector(settings, batch_size: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "projector", *args],
        env=projector_env(settings, batch_size), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )


def stored_offsets(db) -> int:
    return db.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets").fetchone()[0]


def test_sigkill_mid_stream_then_restart_gives_exactly_the_expected_rows(settings, topics, db):
    events = month_events(3000, seed=13)
    produce(settings, events)
    total = len(events)

    first = start_projector(settings, batch_size=50)
    try:
        deadline = time.monotonic() + 90
        while stored_offsets(db) < total // 5:
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            assert time.monotonic() < deadline, "the projector made no progress"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    progress = stored_offsets(db)
    assert 0 < progress < total, "killed mid-stream, not before or after"

    second = start_projector(settings, 500, "--until-caught-up", "--max-seconds", "120")
    out, _ = second.communicate(timeout=150)
    assert second.returncode == 0, out

    assert stored_offsets(db) == total
    actual = fetch_tables(db)
    expected = expected_tables(events)
    for table in expected:
        assert actual[table] == expected[table], table


def test_sigterm_finishes_the_batch_and_exits_cleanly(settings, topics, db):
    events = month_events(1500, seed=17)
    produce(settings, events)
    proc = start_projector(settings, batch_size=100)
    try:
        deadline = time.monotonic() + 90
        while stored_offsets(db) == 0:
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
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
