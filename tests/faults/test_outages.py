"""The broker or the database goes away under a running projector: nothing lost, nothing doubled.

The projector is a real ``nyc311 run projector`` process; the outages are real (the private
Kafka broker or PostgreSQL server is stopped and started again with services/services.sh).
"""

from __future__ import annotations

import time

import pytest

from storage.db import connect
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


def test_broker_restart_under_a_running_projector(private_services, private_settings, tmp_path):
    settings = private_settings
    before = month_events(1500, seed=41)
    after = month_events(300, seed=43)
    produce(settings, before)
    projector = start_projector(settings, tmp_path / "projector.log", batch_size=50)
    try:
        wait_until(lambda: stored_offsets(settings) >= len(before) // 4, 90,
                   "the projector to make progress", [projector])
        assert stored_offsets(settings) < len(before), "restart mid-stream, not after"

        private_services.stop_kafka()
        try:
            time.sleep(3)  # the projector polls a broker that is not there
            assert projector.alive()
        finally:
            private_services.start_kafka()

        produce(settings, after)
        total = len(before) + len(after)
        wait_until(lambda: stored_offsets(settings) == total, 120,
                   "every record to be projected after the restart", [projector])
        assert projector.stop() == 0, projector.output()[-4000:]
    finally:
        projector.kill()

    with connect(settings) as conn:
        assert fetch_tables(conn) == expected_tables(before + after)


def test_database_restart_under_a_running_projector(private_services, private_settings,
                                                    tmp_path):
    settings = private_settings
    before = month_events(1500, seed=51)
    after = month_events(300, seed=53)
    produce(settings, before)
    projector = start_projector(settings, tmp_path / "projector.log", batch_size=50)
    try:
        wait_until(lambda: stored_offsets(settings) >= len(before) // 4, 90,
                   "the projector to make progress", [projector])
        assert stored_offsets(settings) < len(before), "outage mid-stream, not after"

        private_services.stop_postgres()
        try:
            produce(settings, after[: len(after) // 2])  # arrives while the database is away
            time.sleep(4)  # several retries, partitions paused
            assert projector.alive(), projector.output()[-4000:]
        finally:
            private_services.start_postgres()

        produce(settings, after[len(after) // 2:])
        total = len(before) + len(after)
        wait_until(lambda: stored_offsets(settings) == total, 120,
                   "every record to be projected after the outage", [projector])
        assert projector.alive(), "the projector survived the outage"
        assert projector.stop() == 0, projector.output()[-4000:]
    finally:
        projector.kill()

    assert "database unavailable" in projector.output()
    with connect(settings) as conn:
        assert fetch_tables(conn) == expected_tables(before + after)
