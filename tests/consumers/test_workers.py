"""``nyc311 run projector --processes N``: workers of one group, supervised by one parent.

Real processes on the real services: the rows are exact, a stop signal to the parent stops
every worker cleanly, and a worker that dies takes the run down with it (nothing is lost: the
next start resumes from the offsets stored with the rows).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from consumers.workers import worker_pids
from tests.consumers.test_crash import start_projector, stored_offsets
from tests.consumers.test_projector import month_events
from tests.helpers import expected_tables, fetch_tables, produce

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition, seconds: float, proc, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def assert_exact(db, events) -> None:
    assert stored_offsets(db) == len(events)
    actual, expected = fetch_tables(db), expected_tables(events)
    for table in expected:
        assert actual[table] == expected[table], table


@contextmanager
def two_workers_under_way(settings, db, events) -> Iterator[tuple[subprocess.Popen, list[int]]]:
    """The parent and its two workers, once they have committed something; whatever the test
    did, nothing of them is left running after it."""
    produce(settings, events)
    proc = start_projector(settings, 50, "--processes", "2")
    workers: list[int] = []
    try:
        wait_for(lambda: len(worker_pids(proc.pid)) == 2, 60, proc, "two workers started")
        workers = worker_pids(proc.pid)
        wait_for(lambda: stored_offsets(db) > 0, 90, proc, "the workers made no progress")
        yield proc, workers
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def catch_up_and_check(settings, db, events, *args: str) -> None:
    proc = start_projector(settings, 500, *args, "--until-caught-up", "--max-seconds", "120")
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, out
    assert_exact(db, events)


def test_two_processes_project_exactly_the_expected_rows(settings, topics, db):
    events = month_events(1500, seed=31)
    produce(settings, events)
    proc = start_projector(settings, 200, "--processes", "2", "--until-caught-up",
                           "--max-seconds", "120")
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, out
    assert f"projector: {len(events):,} records" in out
    assert "(2 processes)" in out
    assert_exact(db, events)


def test_sigterm_to_the_parent_stops_every_worker_and_a_restart_finishes(settings, topics, db):
    events = month_events(3000, seed=32)
    with two_workers_under_way(settings, db, events) as (proc, workers):
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "(2 processes)" in out
        assert not [pid for pid in workers if alive(pid)]
    catch_up_and_check(settings, db, events, "--processes", "2")


def test_a_worker_killed_stops_the_others_and_fails_the_run(settings, topics, db):
    events = month_events(3000, seed=33)
    with two_workers_under_way(settings, db, events) as (proc, workers):
        victim, other = workers
        os.kill(victim, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 1, out
        assert "1 of 2 workers failed" in out
        assert not alive(other)
    catch_up_and_check(settings, db, events)


def test_workers_stop_when_their_parent_is_killed(settings, topics, db):
    events = month_events(2000, seed=34)
    with two_workers_under_way(settings, db, events) as (proc, workers):
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 60
        while [pid for pid in workers if alive(pid)]:
            assert time.monotonic() < deadline, "orphaned workers kept running"
            time.sleep(0.1)
