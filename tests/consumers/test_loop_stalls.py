"""The consume loop against the real broker and database: a stall is reported, a stop is honoured.

A batch that waits on PostgreSQL without any error (a lock another session holds) counts as
stalled once it has been in hand ``NYC311_STALL_SECONDS``; a stop while the dead-letter queue
refuses a record ends the run with the batch uncommitted, and the next run does it all.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from consumers.loop import ConsumeLoop
from consumers.projector import GROUP_ID, Projector
from nyc311.kafka import EventProducer
from nyc311.metrics import Metrics
from nyc311.topics import all_topics, dlq_topic, ensure_topics
from operations.dlq.letters import list_dead_letters
from storage.offsets import load_group
from tests.consumers.test_dlq_limits import produce_big, set_max_message_bytes
from tests.consumers.test_projector import month_events
from tests.helpers import expected_tables, fetch_tables, produce, project
from tests.nyc311.test_metrics import RawHandler, Running, value, wait_for

pytestmark = pytest.mark.integration


class LockingHandler(RawHandler):
    """Writes each record's value into a table of its own, so a session holding that table's
    lock makes the batch wait inside PostgreSQL, with no error at all."""

    def write(self, conn: psycopg.Connection, items: list[Any]) -> None:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO stall_probe (v) VALUES (%s)", [(i.value,) for i in items])


@pytest.fixture
def service() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for each in started:
        each.close()


def test_a_batch_waiting_on_a_lock_without_error_is_reported_stalled(settings, topics, db,
                                                                     service):
    topic = settings.topic("nyc311.request-created")
    db.execute("CREATE TABLE stall_probe (v bytea)")
    loop = ConsumeLoop(replace(settings, stall_seconds=1.0), "nyc311-stall-probe",
                       LockingHandler(topic), metrics=Metrics("probe", CollectorRegistry()))
    running = Running(loop).start()
    service.append(running)
    wait_for(lambda: running.health()[0] == 200, "/healthz 200")

    with psycopg.connect(settings.libpq_url, options=f"-c search_path={settings.db_schema}") \
            as holder:
        holder.execute("LOCK TABLE stall_probe IN ACCESS EXCLUSIVE MODE")  # until commit
        with EventProducer(settings) as producer:
            for i in range(5):
                producer.produce_raw(topic, b"k", b"value %d" % i)
        _, reason = wait_for(lambda: (r := running.health())[0] == 503 and r,
                             "/healthz to say stalled")
        assert reason.startswith("stalled for ")
        assert "not committed yet (no error reported)" in reason
        text = running.metrics()
        assert value(text, "nyc311_stalled_seconds", service="probe") >= 1.0
        assert value(text, "nyc311_ready", service="probe") == 0
        assert loop.stats.records == 0
        holder.rollback()  # the lock goes: the batch commits

    wait_for(lambda: loop.stats.records == 5, "the batch to commit")
    wait_for(lambda: running.health()[0] == 200, "/healthz 200 again")
    assert value(running.metrics(), "nyc311_stalled_seconds", service="probe") == 0
    assert db.execute("SELECT count(*) FROM stall_probe").fetchone() == (5,)
    running.stop()


def test_a_stop_while_the_dlq_refuses_a_record_leaves_the_batch_for_the_next_run(
        settings, topics, db):
    source = settings.topic("nyc311.request-created")
    set_max_message_bytes(settings, dlq_topic(source), 1024)  # not even a truncated copy fits
    events = month_events(30, seed=41)
    original = b"\x07" + os.urandom(100_000)
    produce(settings, events[:10])
    produce_big(settings, source, {0: original, 1: original, 2: original})
    produce(settings, events[10:])

    loop = ConsumeLoop(replace(settings, stall_seconds=1.0), GROUP_ID, Projector(settings),
                       metrics=Metrics("projector", CollectorRegistry()))
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    wait_for(lambda: loop.stalled_seconds() > 1.0, "the loop to be stalled on the DLQ")
    assert "refuses even a truncated copy" in loop.stall_reason()
    loop.stop()
    thread.join(60)  # a bound on the thread ending, not a measure of speed
    assert not thread.is_alive(), "the loop did not stop while the DLQ refused its record"
    assert loop.stats.abandoned.startswith("stopped on request while dead-lettering failed "
                                           "(cannot dead-letter ")
    assert "is not committed; it is read again on the next start" in loop.stats.abandoned
    assert load_group(db, settings.group(GROUP_ID)) == {}  # nothing committed
    assert list(list_dead_letters(settings, "nyc311.request-created")) == []

    ensure_topics(settings, all_topics(settings))  # the fix
    stats = project(settings)
    assert stats.dead_lettered == 3
    assert fetch_tables(db) == expected_tables(events)
