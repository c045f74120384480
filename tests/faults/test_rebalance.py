"""Two projectors share a group; one is killed with SIGKILL mid-stream, the other takes over.

The killed member's partitions move to the survivor once the broker stops hearing from it (6 s
here); the survivor resumes them from the offsets in PostgreSQL, so whatever the dead member had
committed is kept and whatever it had in hand is done again, once.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from nyc311.kafka import EventProducer
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

ASSIGNED = re.compile(r"(\d+) partitions held")


def assigned(output: str) -> int:
    """Partitions the member holds now (each assignment and revocation logs how many)."""
    counts = ASSIGNED.findall(output)
    return int(counts[-1]) if counts else 0


def produce_slowly(settings, events, chunk: int = 100, pause: float = 0.05) -> None:
    """A steady stream rather than one burst, so a member is killed with work in hand."""
    with EventProducer(settings) as producer:
        for start in range(0, len(events), chunk):
            for name, record in events[start:start + chunk]:
                producer.send(name, record)
            producer.flush()
            time.sleep(pause)


def test_sigkill_of_one_of_two_projectors_loses_and_doubles_nothing(private_settings, tmp_path):
    settings = private_settings
    before = month_events(300, seed=61)
    stream = month_events(2500, seed=67)
    total = len(before) + len(stream)
    produce(settings, before)

    first = start_projector(settings, tmp_path / "first.log", batch_size=20)
    second = start_projector(settings, tmp_path / "second.log", batch_size=20)
    producer = threading.Thread(target=produce_slowly, args=(settings, stream), daemon=True)
    try:
        # both members hold partitions (12 in all: 4 topics x 3)
        wait_until(lambda: assigned(first.output()) > 0 and assigned(second.output()) > 0
                   and assigned(first.output()) + assigned(second.output()) == 12, 60,
                   "both projectors to hold partitions", [first, second])
        producer.start()
        wait_until(lambda: stored_offsets(settings) >= total // 3, 90,
                   "progress on the stream", [first, second])
        assert assigned(first.output()) > 0, "the member killed holds partitions"
        first.kill()
        assert stored_offsets(settings) < total, "killed mid-stream, not after"

        producer.join(120)
        assert not producer.is_alive()
        wait_until(lambda: stored_offsets(settings) == total, 120,
                   "the survivor to finish the dead member's partitions", [second])
        assert assigned(second.output()) == 12
        assert second.stop() == 0, second.output()[-4000:]
    finally:
        first.kill()
        second.kill()

    with connect(settings) as conn:
        assert fetch_tables(conn) == expected_tables(before + stream)
