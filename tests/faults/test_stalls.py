"""Nothing stalls silently: a projector that cannot make progress says so, and stops when told.

Real outages of the private pair (PostgreSQL or the Kafka broker stopped with
services/services.sh) under a real ``nyc311 run projector`` process: while it is stuck,
``/healthz`` answers 503 with the reason, ``nyc311_stalled_seconds`` rises, ``nyc311_ready`` is 0
and ``nyc311 lag`` says STALL (the process still polls, so it keeps its partitions); a
``--max-seconds`` limit or SIGTERM ends it cleanly (one log line, exit status 75 when work was
left uncommitted, no traceback), and nothing is lost: the next run projects everything.

The waits below are bounds on a process ending or a state being reached, never on speed: each
is generous, and far below the time the failure they guard against would take.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.loop import EX_TEMPFAIL
from storage.db import connect
from tests.consumers.test_projector import month_events
from tests.helpers import (
    Projector,
    expected_tables,
    fetch_tables,
    produce,
    project,
    run_cli,
    start_cli,
    stored_offsets,
    wait_until,
)
from tests.servers import free_port, http_get

pytestmark = pytest.mark.integration

STALL_SECONDS = "2"


@dataclass
class Service(Projector):
    """``nyc311 run projector`` with its metrics port, output in a file."""

    port: int

    def get(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def stalled(self) -> tuple[int, str] | None:
        """/healthz while it says stalled, else None (not listening yet counts as not yet)."""
        assert self.proc.poll() is None, self.output()[-4000:]
        try:
            status, body = self.get("/healthz")
        except OSError:
            return None
        return (status, body) if status == 503 and body.startswith("stalled for") else None

    def metric(self, name: str) -> float | None:
        _, text = self.get("/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels.get("service") == "projector":
                    return float(sample.value)
        return None

    def ended(self, timeout: float) -> int:
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout:.0f} s later:\n{self.output()[-4000:]}")


def start(settings, log: Path, *args: str, **env: str) -> Service:
    port = free_port()
    proc = start_cli(settings, "run", "projector", "--metrics-port", str(port), *args, log=log,
                     env={"NYC311_STALL_SECONDS": STALL_SECONDS, **env})
    return Service(proc, log, port)


def lag_of(settings) -> dict:
    done = run_cli(settings, "lag", "--json", "--group", settings.group("nyc311-projector"),
                   "--interval", "0.5")
    assert done.returncode == 0, done.stderr
    (group,) = json.loads(done.stdout)["groups"]
    return group


def assert_clean_stop(service: Service, cause: str) -> str:
    """No traceback, and one line saying the stop, what was left and that it is not lost."""
    output = service.output()
    assert "Traceback" not in output, output[-4000:]
    lines = [line for line in output.splitlines()
             if f"stopped {cause} while the database was unavailable" in line]
    assert len(lines) == 1, output[-4000:]
    assert "on the next start" in lines[0]
    return lines[0]


def test_max_seconds_ends_a_projector_stuck_on_a_stopped_database(private_services,
                                                                  private_settings, tmp_path):
    settings = private_settings
    events = month_events(300, seed=61)
    produce(settings, events)
    limit = 20
    private_services.stop_postgres()
    try:
        service = start(settings, tmp_path / "projector.log", "--max-seconds", str(limit))
        try:
            _, reason = wait_until_value(service.stalled, 60, "/healthz to say stalled")
            assert "database unavailable" in reason
            assert service.metric("nyc311_stalled_seconds") > 0
            assert service.metric("nyc311_ready") == 0
            group = lag_of(settings)  # it polls, so it is a member owning its partitions
            assert group["status"] == "STALL", group["reason"]
            assert group["members"] == 1 and group["sum_lag"] == len(events)
            # ends at its limit although the database is still away: the limit, the time it
            # takes to start, and a margin of its own
            code = service.ended(limit + 40)
        finally:
            service.kill()
    finally:
        private_services.start_postgres()

    assert code == EX_TEMPFAIL
    line = assert_clean_stop(service, f"at the {limit} s limit")
    assert "nothing was read from the 12 assigned partitions" in line
    assert stored_offsets(settings) == 0

    assert project(settings).records == len(events)  # nothing lost
    with connect(settings) as conn:
        assert fetch_tables(conn) == expected_tables(events)


def test_sigterm_ends_a_projector_stuck_on_its_batch_and_loses_nothing(private_services,
                                                                       private_settings,
                                                                       tmp_path):
    settings = private_settings
    before = month_events(1500, seed=71)
    after = month_events(300, seed=73)
    produce(settings, before)
    service = start(settings, tmp_path / "projector.log", NYC311_BATCH_SIZE="50")
    try:
        wait_until(lambda: stored_offsets(settings) >= len(before) // 4, 90,
                   "the projector to make progress")
        private_services.stop_postgres()
        try:
            produce(settings, after)  # its batch meets the database away
            _, reason = wait_until_value(service.stalled, 60, "/healthz to say stalled")
            assert "database unavailable" in reason
            assert service.metric("nyc311_stalled_seconds") > 0
            group = lag_of(settings)
            assert group["status"] == "STALL" and group["members"] == 1, group["reason"]
            service.proc.send_signal(signal.SIGTERM)
            code = service.ended(30)
        finally:
            private_services.start_postgres()
    finally:
        service.kill()

    assert code == EX_TEMPFAIL
    line = assert_clean_stop(service, "on SIGTERM")
    assert "the batch in hand (" in line and "records) is not committed" in line

    project(settings)  # nothing lost, nothing doubled
    assert stored_offsets(settings) == len(before) + len(after)
    with connect(settings) as conn:
        assert fetch_tables(conn) == expected_tables(before + after)


def test_sigterm_ends_a_projector_promptly_while_the_broker_is_down(private_services,
                                                                    private_settings, tmp_path):
    settings = private_settings
    events = month_events(600, seed=81)
    produce(settings, events)
    # a session timeout of two minutes: a close that waited for it would outlast the bound
    service = start(settings, tmp_path / "projector.log", NYC311_BATCH_SIZE="100",
                    KAFKA_SESSION_TIMEOUT_MS="120000")
    try:
        wait_until(lambda: stored_offsets(settings) == len(events), 90,
                   "the projector to catch up")
        private_services.stop_kafka()
        try:
            time.sleep(1)  # let it poll a broker that is not there
            service.proc.send_signal(signal.SIGTERM)
            code = service.ended(45)
        finally:
            private_services.start_kafka()
    finally:
        service.kill()

    output = service.output()
    assert code == 0, output[-4000:]  # its batches were committed: nothing left undone
    assert "Traceback" not in output
    # (the group keeps the member it could not tell it was leaving until its session times
    # out, so a new run would wait for that; what was committed is checked instead)
    assert stored_offsets(settings) == len(events)
    with connect(settings) as conn:
        assert fetch_tables(conn) == expected_tables(events)


def test_a_projector_started_while_the_broker_is_down_says_so_within_its_limit(
        private_services, private_settings, tmp_path):
    settings = private_settings
    private_services.stop_kafka()
    try:
        service = start(settings, tmp_path / "projector.log", "--max-seconds", "5")
        code = service.ended(5 + 40)
    finally:
        private_services.start_kafka()
    output = service.output()
    assert code == 1, output
    assert "Traceback" not in output
    assert f"Error: Kafka unavailable at {settings.kafka_bootstrap_servers}" in output


def wait_until_value(check, timeout: float, what: str):
    """``check()`` once it returns something true; fail after ``timeout`` s."""
    found = []
    wait_until(lambda: bool(found.append(check()) or found[-1]), timeout, what)
    return found[-1]
