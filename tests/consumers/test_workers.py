"""``nyc311 run projector --processes N``: workers of one group, supervised by one parent.

Real processes on the real services: the rows are exact, a stop signal to the parent stops
every worker cleanly, and a worker that dies takes the run down with it (nothing is lost: the
next start resumes from the offsets stored with the rows).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from consumers.workers import worker_pids
from tests.consumers.test_projector import month_events
from tests.helpers import (
    Projector,
    expected_tables,
    fetch_tables,
    produce,
    start_projector,
    stored_offsets,
    wait_until,
)

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_exact(settings, db, events) -> None:
    assert stored_offsets(settings) == len(events)
    actual, expected = fetch_tables(db), expected_tables(events)
    for table in expected:
        assert actual[table] == expected[table], table


@contextmanager
def two_workers_under_way(settings, events, log: Path) -> Iterator[tuple[Projector, list[int]]]:
    """The parent and its two workers, once they have committed something; whatever the test
    did, nothing of them is left running after it."""
    produce(settings, events)
    parent = start_projector(settings, log, 50, "--processes", "2")
    workers: list[int] = []
    try:
        wait_until(lambda: len(worker_pids(parent.proc.pid)) == 2, 60, "two workers started",
                   [parent], interval=0.05)
        workers = worker_pids(parent.proc.pid)
        wait_until(lambda: stored_offsets(settings) > 0, 90, "the workers to make progress",
                   [parent], interval=0.05)
        yield parent, workers
    finally:
        parent.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def catch_up_and_check(settings, db, events, log: Path, *args: str) -> None:
    projector = start_projector(settings, log, 500, *args, "--until-caught-up",
                                "--max-seconds", "120")
    assert projector.wait(150) == 0, projector.output()
    assert_exact(settings, db, events)


def test_two_processes_project_exactly_the_expected_rows(settings, topics, db, tmp_path):
    events = month_events(1500, seed=31)
    produce(settings, events)
    projector = start_projector(settings, tmp_path / "projector.log", 200, "--processes", "2",
                                "--until-caught-up", "--max-seconds", "120")
    code = projector.wait(150)
    out = projector.output()
    assert code == 0, out
    assert f"projector: {len(events):,} records" in out
    assert "(2 processes)" in out
    assert_exact(settings, db, events)


def test_sigterm_to_the_parent_stops_every_worker_and_a_restart_finishes(settings, topics, db,
                                                                         tmp_path):
    events = month_events(3000, seed=32)
    with two_workers_under_way(settings, events, tmp_path / "first.log") as (parent, workers):
        code = parent.stop(60)
        out = parent.output()
        assert code == 0, out
        assert "(2 processes)" in out
        assert not [pid for pid in workers if alive(pid)]
    catch_up_and_check(settings, db, events, tmp_path / "second.log", "--processes", "2")


def test_a_worker_killed_stops_the_others_and_fails_the_run(settings, topics, db, tmp_path):
    events = month_events(3000, seed=33)
    with two_workers_under_way(settings, events, tmp_path / "first.log") as (parent, workers):
        victim, other = workers
        os.kill(victim, signal.SIGKILL)
        code = parent.wait(60)
        out = parent.output()
        assert code == 1, out
        assert "1 of 2 workers failed" in out
        assert not alive(other)
    catch_up_and_check(settings, db, events, tmp_path / "second.log")


def test_workers_stop_when_their_parent_is_killed(settings, topics, db, tmp_path):
    events = month_events(2000, seed=34)
    with two_workers_under_way(settings, events, tmp_path / "first.log") as (parent, workers):
        parent.kill()
        deadline = time.monotonic() + 60
        while [pid for pid in workers if alive(pid)]:
            assert time.monotonic() < deadline, "orphaned workers kept running"
            time.sleep(0.1)
