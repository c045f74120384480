"""``nyc311 rebuild``: the projection rebuilt from Kafka beside the live one, then switched over.

The live projector runs during the rebuild and events keep arriving; the switch waits for it to
stop; afterwards the tables are the same as before, the survey loop's state and offsets have
moved across, the published schema is untouched, and the projector, started again, resumes
exactly where the rebuild stopped.
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from nyc311.kafka import EventProducer
from storage.db import connect
from tests.consumers.test_projector import month_events
from tests.consumers.test_workers import alive
from tests.helpers import (
    expected_tables,
    fetch_tables,
    produce,
    project,
    start_cli,
    start_projector,
    stored_offsets,
    wait_until,
)

pytestmark = pytest.mark.integration


def schemas(conn: psycopg.Connection, like: str) -> list[str]:
    return [name for (name,) in conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1", (like,)).fetchall()]


def operational_state(conn: psycopg.Connection, settings) -> dict[str, object]:
    """What the survey loop did, which no topic holds: it must survive a rebuild."""
    return {
        "dispatch": conn.execute("SELECT closure_event_id, survey_id, status "
                                 "FROM survey_dispatch ORDER BY 1").fetchall(),
        "submissions": conn.execute("SELECT survey_id, event_id FROM survey_submissions "
                                    "ORDER BY 1").fetchall(),
        "forwards": conn.execute("SELECT survey_id, status FROM reopen_forwards "
                                 "ORDER BY 1").fetchall(),
        "dispatcher_offsets": conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = %s "
            "ORDER BY 1, 2", (settings.group("nyc311-dispatcher"),)).fetchall(),
        "published": conn.execute("SELECT month, revision, content_sha256 "
                                  "FROM published.revisions").fetchall(),
    }


def seed_operational_state(conn: psycopg.Connection, settings) -> None:
    now = datetime.now(UTC)
    for status in ("sent", "pending", "failed"):
        conn.execute("INSERT INTO survey_dispatch (closure_event_id, survey_id, request_id, "
                     "closed_at, closure_status, status) VALUES (%s, %s, 'r1', %s, 'CLOSED', %s)",
                     (uuid.uuid4(), uuid.uuid4(), now, status))
    conn.execute("INSERT INTO survey_submissions (survey_id, event_id) VALUES (%s, %s)",
                 (uuid.uuid4(), uuid.uuid4()))
    conn.execute("INSERT INTO reopen_forwards (survey_id, event_id, request_id, answered_at, "
                 "status) VALUES (%s, %s, 'r1', %s, 'forwarded')",
                 (uuid.uuid4(), uuid.uuid4(), now))
    conn.execute("INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) "
                 "VALUES (%s, %s, 0, 42)",
                 (settings.group("nyc311-dispatcher"), settings.topic("nyc311.request-closed")))
    conn.execute("INSERT INTO published.revisions (month, revision, as_of, content_sha256) "
                 "VALUES ('2026-02', 1, %s, 'abc')", (now,))


def start_rebuild(settings, log, *args: str) -> subprocess.Popen:
    return start_cli(settings, "rebuild", "--yes", "--no-progress", *args, log=log)


def test_rebuild_switches_over_and_the_projector_continues(private_settings, tmp_path):
    settings = private_settings
    first = month_events(800, seed=71)
    during = month_events(200, seed=73)  # while the rebuild runs: it may or may not see them
    waiting = month_events(150, seed=77)  # after it caught up: only the live projector sees them
    later = month_events(100, seed=79)  # after the switch
    produce(settings, first)
    project(settings)
    with connect(settings, autocommit=True) as conn:
        seed_operational_state(conn, settings)
        state = operational_state(conn, settings)

    live = start_projector(settings, tmp_path / "live.log", batch_size=200)
    rebuild = start_rebuild(settings, tmp_path / "rebuild.log", "--wait", "120")
    log = tmp_path / "rebuild.log"
    try:
        produce(settings, during)
        wait_until(lambda: "waiting for the live projector" in log.read_text(), 90,
                   "the rebuild to catch up")
        produce(settings, waiting)
        total = len(first) + len(during) + len(waiting)
        wait_until(lambda: stored_offsets(settings) == total, 60,
                   "the live projector to project what arrived", [live])
        with connect(settings) as conn:  # nothing switched while the projector runs
            assert schemas(conn, "nyc311_old_%") == []
            assert len(schemas(conn, "nyc311_rebuild_%")) == 1
        assert live.stop() == 0, live.output()[-3000:]
        assert rebuild.wait(60) == 0, log.read_text()[-4000:]
    finally:
        live.kill()
        if rebuild.poll() is None:
            rebuild.kill()
    assert "DROP SCHEMA" in log.read_text()

    with connect(settings) as conn:
        [old] = schemas(conn, "nyc311_old_%")
        assert schemas(conn, "nyc311_rebuild_%") == []
        assert operational_state(conn, settings) == state  # moved across, published untouched
        assert conn.execute("SELECT count(*) FROM consumer_offsets WHERE group_id LIKE "
                            "'%rebuild%'").fetchone()[0] == 0
        for table in ("survey_dispatch", "survey_submissions", "reopen_forwards"):
            assert conn.execute("SELECT to_regclass(%s)", (f"{old}.{table}",)).fetchone()[0] \
                is None  # moved, not copied
        switched_at = stored_offsets(settings)  # where the rebuild stopped
        assert len(first) <= switched_at <= len(first) + len(during)

    # the projector, started again, resumes exactly where the rebuild stopped
    again = start_projector(settings, tmp_path / "again.log", 200,
                            "--until-caught-up", "--max-seconds", "90")
    assert again.proc.wait(120) == 0, again.output()[-3000:]
    assert f"projector: {total - switched_at:,} records" in again.output(), again.output()
    with connect(settings) as conn:
        rebuilt = fetch_tables(conn)
        conn.execute(f'SET search_path TO "{old}"')
        assert rebuilt == fetch_tables(conn)  # the same tables as the live projection had
    assert rebuilt == expected_tables(first + during + waiting)

    produce(settings, later)
    stats = project(settings)
    assert stats.records == len(later)
    with connect(settings, autocommit=True) as conn:
        assert fetch_tables(conn) == expected_tables(first + during + waiting + later)
        conn.execute(f'DROP SCHEMA "{old}" CASCADE')


def test_rebuild_gives_up_while_the_projector_runs_and_changes_nothing(private_settings,
                                                                       tmp_path):
    settings = private_settings
    events = month_events(100, seed=83)
    produce(settings, events)
    live = start_projector(settings, tmp_path / "live.log", batch_size=200)
    try:
        wait_until(lambda: stored_offsets(settings) == len(events), 60, "projection", [live])
        with connect(settings) as conn:
            before = fetch_tables(conn)
        rebuild = start_rebuild(settings, tmp_path / "rebuild.log", "--wait", "2")
        assert rebuild.wait(90) != 0
        assert live.alive()
    finally:
        live.kill()
    out = (tmp_path / "rebuild.log").read_text()
    assert "still running" in out and "unchanged" in out, out[-3000:]
    with connect(settings) as conn:
        # the unfinished schema was dropped (the vault is not a projection schema)
        assert schemas(conn, "nyc311_%") == [settings.vault_schema]
        assert fetch_tables(conn) == before


def test_rebuild_refuses_topics_that_lost_their_oldest_events(private_settings, tmp_path):
    """Retention deleted the start of a partition: a rebuild would silently lose those events."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    settings = private_settings
    events = month_events(100, seed=89)
    produce(settings, events)
    project(settings)
    topic = settings.topic("nyc311.request-created")
    admin = AdminClient(settings.kafka_config())
    for future in admin.delete_records([TopicPartition(topic, 0, 5)]).values():
        future.result()

    rebuild = start_rebuild(settings, tmp_path / "rebuild.log")
    assert rebuild.wait(90) != 0
    out = (tmp_path / "rebuild.log").read_text()
    assert "no longer hold their full history" in out and f"{topic}[0] from offset 5" in out, out
    with connect(settings) as conn:
        assert schemas(conn, "nyc311_%") == [settings.vault_schema]
        assert fetch_tables(conn) == expected_tables(events)


# -- several processes ----------------------------------------------------------------------------


def rebuild_schema_progress(settings) -> int:
    """What the rebuild's workers committed so far to its new schema (0 before it exists)."""
    with connect(settings) as conn:
        found = schemas(conn, f"{settings.db_schema}_rebuild_%")
        if not found:
            return 0
        row = conn.execute(f'SELECT coalesce(sum(next_offset), 0) FROM "{found[0]}".'
                           "consumer_offsets WHERE group_id LIKE '%rebuild%'").fetchone()
    return int(row[0]) if row else 0


def rebuild_and_drop_the_old(settings, log, *args: str) -> dict:
    """One rebuild run to its switch (no live projector runs); the rows it gave, checked against
    the projection it replaced, whose schema is then dropped."""
    rebuild = start_rebuild(settings, log, *args)
    assert rebuild.wait(180) == 0, log.read_text()[-4000:]
    with connect(settings, autocommit=True) as conn:
        [old] = schemas(conn, "nyc311_old_%")
        rebuilt = fetch_tables(conn)
        conn.execute(f'SET search_path TO "{old}"')
        assert fetch_tables(conn) == rebuilt, f"{args}: not the rows the projection had"
        conn.execute(f'DROP SCHEMA "{old}" CASCADE')
    return rebuilt


def test_rebuild_with_two_processes_gives_the_rows_of_one(private_settings, tmp_path):
    settings = private_settings
    events = month_events(1500, seed=101)
    produce(settings, events)
    with EventProducer(settings) as producer:  # dead-lettered by every rebuild alike
        producer.produce_raw(settings.topic("nyc311.request-created"), b"bad", b"not avro")
    project(settings)

    one = rebuild_and_drop_the_old(settings, tmp_path / "one.log", "--processes", "1")
    assert stored_offsets(settings) == len(events) + 1
    two = rebuild_and_drop_the_old(settings, tmp_path / "two.log", "--processes", "2")
    assert stored_offsets(settings) == len(events) + 1  # renamed to the live group, complete
    assert two == one
    assert two == expected_tables(events)
    out = (tmp_path / "two.log").read_text()
    assert f"rebuilt schema 'nyc311' from {len(events):,} records (1 dead-lettered)" in out, out
    assert "started 2 workers" in out


def two_workers_rebuilding(settings, tmp_path, events) -> tuple[subprocess.Popen, list[int]]:
    """A rebuild with two worker processes, once they have committed something into the new
    schema (the batches are small, so there is much left to do)."""
    from consumers.workers import worker_pids

    produce(settings, events)
    rebuild = start_cli(settings, "rebuild", "--yes", "--no-progress", "--processes", "2",
                        log=tmp_path / "rebuild.log", env={"NYC311_BATCH_SIZE": "2"})
    wait_until(lambda: len(worker_pids(rebuild.pid)) == 2, 60, "two workers started",
               interval=0.05)
    workers = worker_pids(rebuild.pid)
    wait_until(lambda: rebuild_schema_progress(settings) > 0, 90,
               "the workers to commit something", interval=0.05)
    assert rebuild.poll() is None
    return rebuild, workers


def assert_unchanged(settings, before, out: str) -> None:
    assert "unchanged" in out, out[-4000:]
    with connect(settings) as conn:
        assert schemas(conn, "nyc311_%") == [settings.vault_schema]  # the new schema dropped
        assert fetch_tables(conn) == before


def stop_two_worker_rebuild(settings, tmp_path, seed: int, stop) -> tuple[object, str]:
    """Start a rebuild with two workers, take the live tables, ``stop(rebuild, workers)``; the
    rebuild must fail with no worker left. Returns the tables before and the rebuild's log."""
    rebuild, workers = two_workers_rebuilding(settings, tmp_path, month_events(3000, seed=seed))
    try:
        with connect(settings) as conn:
            before = fetch_tables(conn)
        stop(rebuild, workers)
        assert rebuild.wait(90) != 0
        assert not [pid for pid in workers if alive(pid)]
    finally:
        if rebuild.poll() is None:
            rebuild.kill()
    return before, (tmp_path / "rebuild.log").read_text()


def test_a_rebuild_worker_killed_fails_the_rebuild_and_drops_its_schema(private_settings,
                                                                        tmp_path):
    import os
    import signal

    settings = private_settings
    before, out = stop_two_worker_rebuild(
        settings, tmp_path, 103, lambda _rebuild, workers: os.kill(workers[0], signal.SIGKILL))
    assert "1 of 2 projection workers failed" in out, out[-4000:]
    assert "switched" not in out
    assert_unchanged(settings, before, out)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_rebuild_workers_and_drops_the_schema(private_settings, tmp_path,
                                                                 signame):
    import signal

    settings = private_settings
    before, out = stop_two_worker_rebuild(
        settings, tmp_path, 107,
        lambda rebuild, _workers: rebuild.send_signal(getattr(signal, signame)))
    assert "interrupted before the switch" in out, out[-4000:]
    assert_unchanged(settings, before, out)
