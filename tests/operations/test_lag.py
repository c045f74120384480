"""`nyc311 lag` and the lag exporter against the real broker, checked against Kafka's own tool.

The committed offsets, log ends and lags must be the numbers `kafka-consumer-groups --describe`
prints, except where a group never committed a partition: Kafka's tool shows no lag there (or
leaves the partition out), ours counts the backlog from the log start, which the group will
read. The statuses must follow what the consumers really do (a stopped projector, a member that
owns partitions and does not commit, a group that never committed, a projector stuck on its
batch while its database refuses it).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTP
from prometheus_client.parser import text_string_to_metric_families

from cli import main
from consumers.projector import GROUP_ID as PROJECTOR
from operations.lag.monitor import PROBE_GROUP
from producers.simulate import simulate_month
from storage.offsets import load_group
from tests.helpers import REPO, cli_env, produce, project, start_cli
from tests.servers import free_port, http_get

pytestmark = pytest.mark.integration


def lag_json(settings, *args: str, exit_code: int = 0) -> dict:
    result = CliRunner().invoke(main, ["lag", "--json", *args], env=cli_env(settings),
                                catch_exceptions=False)
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)  # not the log lines of a consumer running beside it


def only_group(report: dict) -> dict:
    (group,) = report["groups"]
    return group


def by_partition(group: dict) -> dict[tuple[str, int], dict]:
    return {(p["topic"], p["partition"]): p for p in group["partitions"]}


def produce_raw(settings, topic: str, counts: dict[int, int]) -> None:
    producer = Producer(settings.kafka_config())
    for partition, count in counts.items():
        for i in range(count):
            producer.produce(topic, value=f"record {i}".encode(), partition=partition)
    assert producer.flush(30) == 0


@contextmanager
def member(settings, group: str, topic: str, partitions: int = 3) -> Iterator[Consumer]:
    """A live member of ``group`` that owns every partition of ``topic`` and commits nothing
    by itself."""
    consumer = Consumer(settings.kafka_config(**{
        "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while len(consumer.assignment()) < partitions and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert len(consumer.assignment()) == partitions
        yield consumer
    finally:
        consumer.close()


def kafka_tool_describe(settings, group: str) -> dict[tuple[str, int], dict[str, str]]:
    """Kafka's own kafka-consumer-groups --describe, its table parsed by column name."""
    if shutil.which("java") is None:
        pytest.skip("Kafka's tools need Java")
    out = subprocess.run(
        ["bash", "services/services.sh", "kafka-tool", "consumer-groups", "--bootstrap-server",
         settings.kafka_bootstrap_servers, "--describe", "--group", group],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout
    lines = [line.split() for line in out.splitlines() if line.strip()]
    start = next(i for i, cols in enumerate(lines) if cols[:2] == ["GROUP", "TOPIC"])
    header = lines[start]
    rows = [dict(zip(header, cols, strict=True)) for cols in lines[start + 1:]]
    return {(r["TOPIC"], int(r["PARTITION"])): r for r in rows}


def test_numbers_agree_with_kafka_consumer_groups_and_a_stuck_member_stalls(settings, topics):
    topic = settings.topic("nyc311.request-created")
    produce_raw(settings, topic, {0: 12, 1: 7, 2: 5})
    group = settings.group("lag-check")
    with member(settings, group, topic) as consumer:
        consumer.commit(offsets=[KafkaTP(topic, 0, 5), KafkaTP(topic, 1, 7)],
                        asynchronous=False)
        tool = kafka_tool_describe(settings, group)
        ours = by_partition(only_group(lag_json(settings, "--group", group, "--window", "1")))

        assert set(ours) == set(tool) == {(topic, 0), (topic, 1), (topic, 2)}
        for tp, row in tool.items():
            p = ours[tp]
            assert row["CURRENT-OFFSET"] == ("-" if p["committed"] is None else str(p["committed"]))
            assert row["LOG-END-OFFSET"] == str(p["log_end"])
            # Kafka's tool has no lag where nothing was committed; ours is the backlog
            assert row["LAG"] == ("-" if p["committed"] is None else str(p["lag"]))
            assert (row["CONSUMER-ID"], row["HOST"], row["CLIENT-ID"]) == (
                p["consumer_id"], p["host"], p["client_id"])
        # and the numbers are the ones this test made
        assert [(ours[(topic, i)]["committed"], ours[(topic, i)]["log_end"],
                 ours[(topic, i)]["lag"]) for i in range(3)] == [(5, 12, 7), (7, 7, 0),
                                                                 (None, 5, 5)]

        # over a window: the member owns partition 0 and does not move past 5 while lag is 7
        group_report = only_group(lag_json(settings, "--group", group, "--window", "3",
                                           "--interval", "0.3"))
        ours = by_partition(group_report)
    assert group_report["status"] == "STALL"
    assert group_report["reason"].startswith(f"{topic}[0]: offset 5 not moving")
    # partition 2, never committed, owned, its 5 records not read: stuck as well
    assert [ours[(topic, i)]["status"] for i in range(3)] == ["STALL", "OK", "STALL"]
    assert ours[(topic, 2)]["reason"].startswith("never committed, 5 record(s) waiting")
    assert ours[(topic, 0)]["lag_seconds"] > 0
    assert ours[(topic, 1)]["lag_seconds"] == 0
    assert ours[(topic, 2)]["lag_seconds"] > 0
    assert group_report["sum_lag"] == 7 + 5
    assert group_report["max_lag"] == 7


def test_lag_grows_while_the_projector_is_stopped_and_clears_once_it_caught_up(settings, topics,
                                                                               db):
    events = list(simulate_month("2026-03", 400, seed=8))
    first, second, third = events[:600], events[600:650], events[650:700]
    group = settings.group(PROJECTOR)
    produce(settings, first)
    project(settings)

    caught_up = only_group(lag_json(settings, "--group", group, "--interval", "0.2"))
    assert caught_up["status"] == "OK" and caught_up["sum_lag"] == 0
    assert caught_up["state"] == "Empty" and caught_up["members"] == 0
    # Kafka's committed offsets are the copy of the ones PostgreSQL holds
    truth = load_group(db, group)
    assert {(p["topic"], p["partition"]): p["committed"]
            for p in caught_up["partitions"] if p["committed"] is not None} == truth
    assert len(truth) == 6  # every partition of both topics with records was consumed
    # the projector's two survey topics are empty: listed, never committed, nothing to read
    empty = [p for p in caught_up["partitions"] if p["committed"] is None]
    assert {p["topic"] for p in empty} == {settings.topic("nyc311.survey-sent"),
                                           settings.topic("nyc311.survey-answered")}
    assert all(p["lag"] == 0 and p["status"] == "OK" for p in empty)

    produce(settings, second)
    time.sleep(1.0)
    stopped = only_group(lag_json(settings, "--group", group, "--interval", "0.3"))
    assert stopped["status"] == "STOP"
    assert stopped["sum_lag"] == len(second)
    assert 1.0 <= stopped["max_lag_seconds"] < 120
    lagging = [p for p in stopped["partitions"] if p["lag"]]
    assert lagging and all(p["status"] == "STOP" and p["lag_seconds"] >= 1.0 for p in lagging)

    produce(settings, third)
    grown = only_group(lag_json(settings, "--group", group, "--window", "1"))
    assert grown["sum_lag"] == len(second) + len(third)
    assert grown["max_lag_seconds"] >= stopped["max_lag_seconds"]

    project(settings)
    again = only_group(lag_json(settings, "--group", group, "--interval", "0.2"))
    assert again["status"] == "OK" and again["sum_lag"] == 0
    assert all(p["lag_seconds"] == 0 and p["status"] == "OK" for p in again["partitions"])


def test_a_group_without_committed_offsets_says_so(settings, topics):
    topic = settings.topic("nyc311.request-closed")
    produce_raw(settings, topic, {0: 3})
    group = settings.group("never-commits")
    with member(settings, group, topic):
        report = only_group(lag_json(settings, "--group", group, "--window", "1"))
        text = CliRunner().invoke(main, ["lag", "--group", group, "--window", "1"],
                                  env=cli_env(settings), catch_exceptions=False).output
    assert report["exists"] and not report["has_committed_offsets"]
    # one sample judges no movement; the backlog from the log start is counted all the same
    assert report["status"] == "OK" and report["reason"].startswith("no committed offsets")
    assert {p["partition"]: (p["committed"], p["log_end"], p["lag"])
            for p in report["partitions"]} == {0: (None, 3, 3), 1: (None, 0, 0),
                                               2: (None, 0, 0)}
    assert report["sum_lag"] == 3
    assert all(p["consumer_id"] for p in report["partitions"])
    assert f"Consumer group '{group}' has no committed offsets." in text


def test_a_missing_group_is_an_error_and_listing_shows_only_this_prefix(settings, topics):
    missing = only_group(lag_json(settings, "--group", settings.group("nobody"), "--window",
                                  "1", exit_code=1))
    assert (missing["exists"], missing["status"], missing["reason"]) == (
        False, "ERR", "group not found")

    topic = settings.topic("nyc311.survey-sent")
    produce_raw(settings, topic, {1: 4})
    with member(settings, settings.group("a"), topic) as a:
        a.commit(offsets=[KafkaTP(topic, 1, 4)], asynchronous=False)
    with member(settings, settings.group("b"), topic) as b:
        b.commit(offsets=[KafkaTP(topic, 1, 1)], asynchronous=False)
    report = lag_json(settings, "--window", "1")
    assert [g["group"] for g in report["groups"]] == [settings.group("a"), settings.group("b")]
    assert [g["sum_lag"] for g in report["groups"]] == [0, 3]
    assert report["summary"] == "2 consumer group(s): 1 OK, 1 STOP"
    assert PROBE_GROUP not in {g["group"] for g in lag_json(settings, "--window", "1")["groups"]}


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    _, text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_exporter_serves_kafka_lag_exporter_metrics_and_stops_on_sigterm(settings, topics):
    topic = settings.topic("nyc311.request-created")
    produce_raw(settings, topic, {0: 12, 1: 7, 2: 5})
    group = settings.group("exported")
    port = free_port()
    with member(settings, group, topic) as consumer:
        consumer.commit(offsets=[KafkaTP(topic, 0, 5), KafkaTP(topic, 1, 7)],
                        asynchronous=False)
        (owner,) = {(m["host"], m["consumer_id"], m["client_id"]) for m in only_group(
            lag_json(settings, "--group", group, "--window", "1"))["partitions"]}
        proc = start_cli(settings, "run", "lag-exporter", "--host", "127.0.0.1", "--port",
                         str(port), "--interval", "0.3", "--window", "3", "--cluster-name", "t",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            metrics: dict = {}
            status_key = ("nyc311_consumergroup_status",
                          frozenset({"cluster_name": "t", "group": group}.items()))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and metrics.get(status_key) != 2:
                time.sleep(0.3)
                try:
                    metrics = scrape(port)
                except OSError:
                    assert proc.poll() is None, proc.communicate()[0]
            assert http_get(f"http://127.0.0.1:{port}/healthz", timeout=5) == (200, "ok\n")
        finally:
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert "lag exporter stopped" in output

    assert metrics[status_key] == 2  # STALL: the member owns partition 0 and sits at 5 of 12

    def partition(name: str, p: int) -> float | None:
        host, consumer_id, client_id = owner
        return metrics.get((name, frozenset({
            "cluster_name": "t", "group": group, "topic": topic, "partition": str(p),
            "member_host": host, "consumer_id": consumer_id, "client_id": client_id}.items())))

    assert [partition("kafka_consumergroup_group_offset", p) for p in range(3)] == [5, 7, None]
    # partition 2 was never committed: its lag is its backlog from the log start
    assert [partition("kafka_consumergroup_group_lag", p) for p in range(3)] == [7, 0, 5]
    assert partition("kafka_consumergroup_group_lag_seconds", 0) > 0
    assert partition("kafka_consumergroup_group_lag_seconds", 1) == 0
    assert partition("kafka_consumergroup_group_lag_seconds", 2) > 0
    per_group = {"cluster_name": "t", "group": group}
    simple = {**per_group, "is_simple_consumer": "false"}
    assert metrics[("kafka_consumergroup_group_max_lag", frozenset(simple.items()))] == 7
    assert metrics[("kafka_consumergroup_group_max_lag_seconds", frozenset(simple.items()))] > 0
    assert metrics[("kafka_consumergroup_group_sum_lag", frozenset(per_group.items()))] == 12
    assert metrics[("kafka_consumergroup_group_topic_sum_lag",
                    frozenset({**per_group, "topic": topic}.items()))] == 12
    for p, end in enumerate([12, 7, 5]):
        tp = frozenset({"cluster_name": "t", "topic": topic, "partition": str(p)}.items())
        assert metrics[("kafka_partition_latest_offset", tp)] == end
        assert metrics[("kafka_partition_earliest_offset", tp)] == 0


def test_watch_redraws_every_interval_until_interrupted(settings, topics):
    topic = settings.topic("nyc311.survey-answered")
    produce_raw(settings, topic, {0: 2})
    group = settings.group("watched")
    with member(settings, group, topic) as consumer:
        consumer.commit(offsets=[KafkaTP(topic, 0, 2)], asynchronous=False)
    proc = start_cli(settings, "lag", "--watch", "--json", "--interval", "0.2", "--window", "2",
                     "--group", group, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert [only_group(r)["samples"] for r in lines] == [1, 2, 2]
    assert all(only_group(r)["status"] == "OK" and only_group(r)["sum_lag"] == 0 for r in lines)


# -- what the group will read, and a consumer that is stuck ----------------------------------------


def test_partitions_a_stopped_projector_never_committed_count_with_their_backlog(settings,
                                                                                 topics):
    from operations.lag.exporter import LagCollector
    from operations.lag.monitor import LagMonitor
    from tests.helpers import survey_events

    events = list(simulate_month("2026-03", 200, seed=9))
    group = settings.group(PROJECTOR)
    produce(settings, events[:300])
    project(settings)
    later = events[300:]
    surveys = survey_events([e for e in events if e[0] == "request_created"], seed=9)
    produce(settings, later + surveys)  # the survey topics: never committed by the group

    report = only_group(lag_json(settings, "--group", group, "--window", "1"))
    never = [p for p in report["partitions"] if p["committed"] is None]
    assert {p["topic"] for p in never} == {settings.topic("nyc311.survey-sent"),
                                           settings.topic("nyc311.survey-answered")}
    assert all(p["lag"] == p["log_end"] - p["log_start"] for p in never)
    assert sum(p["lag"] for p in never) == len(surveys)
    assert report["sum_lag"] == len(later) + len(surveys)  # the whole backlog, not a part
    assert report["status"] == "STOP"  # nobody reads it
    assert all(p["status"] == "STOP" for p in never if p["lag"])

    text = CliRunner().invoke(main, ["lag", "--group", group, "--window", "1"],
                              env=cli_env(settings), catch_exceptions=False).output
    assert f"total lag {len(later) + len(surveys)} record(s)" in text
    assert (f"CURRENT-OFFSET -: never committed; LAG counts from the log start, where the group "
            f"will read ({len(surveys)} record(s) of the total)") in text

    monitor = LagMonitor(settings, [group], window=1)  # the exporter's numbers: the same
    monitor.sample()
    collector = LagCollector("t")
    collector.update(monitor.report(lag_seconds=False))
    exported = {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in collector.collect() for s in family.samples}
    assert exported[("kafka_consumergroup_group_sum_lag",
                     (("cluster_name", "t"), ("group", group)))] == len(later) + len(surveys)
    for topic in ("nyc311.survey-sent", "nyc311.survey-answered"):
        assert exported[("kafka_consumergroup_group_topic_sum_lag", (
            ("cluster_name", "t"), ("group", group), ("topic", settings.topic(topic))))] == \
            sum(1 for name, _ in surveys if name == topic.removeprefix("nyc311.").replace(
                "-", "_"))

    project(settings)
    done = only_group(lag_json(settings, "--group", group, "--window", "1"))
    assert done["sum_lag"] == 0 and done["status"] == "OK"
    assert all(p["committed"] is not None for p in done["partitions"] if p["log_end"])


@contextmanager
def database_refusing(base_settings, settings) -> Iterator[None]:
    """The test's database refuses every connection (and drops the open ones) until the end of
    the block: a real outage of that database, the server staying up for the others."""
    import psycopg

    database = settings.database_url.rpartition("/")[2]
    with psycopg.connect(base_settings.libpq_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" CONNECTION LIMIT 0')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{database}" CONNECTION LIMIT -1')


def test_a_projector_stuck_on_its_work_while_it_heartbeats_is_stall_and_unhealthy(
        settings, topics, base_settings):
    """The projector's database refuses it: the loop retries, keeps polling (so it stays a
    member and owns its partitions), does not commit. `nyc311 lag` says STALL, /healthz 503
    with the reason, nyc311_stalled_seconds rises; all of it clears once the database is back.
    Twice: stuck on its first assignment (partitions never committed), then on a batch."""
    from dataclasses import replace

    from prometheus_client import CollectorRegistry

    from consumers.loop import ConsumeLoop
    from consumers.projector import Projector
    from nyc311.metrics import Metrics
    from tests.nyc311.test_metrics import Running, value, wait_for

    group = settings.group(PROJECTOR)
    events = list(simulate_month("2026-03", 150, seed=12))
    first, second = events[:200], events[200:]
    produce(settings, first)
    loop = ConsumeLoop(replace(settings, stall_seconds=1.0), PROJECTOR, Projector(settings),
                       metrics=Metrics("projector", CollectorRegistry()))
    service = Running(loop)
    try:
        with database_refusing(base_settings, settings):
            service.start()
            _, reason = wait_for(lambda: (r := service.health())[0] == 503
                                 and r[1].startswith("stalled for") and r, "/healthz stalled")
            assert "database unavailable" in reason
            text = service.metrics()
            assert value(text, "nyc311_stalled_seconds", service="projector") > 0
            assert value(text, "nyc311_ready", service="projector") == 0
            stuck = only_group(lag_json(settings, "--group", group, "--interval", "0.3"))
            assert stuck["members"] == 1 and not stuck["has_committed_offsets"]
            assert stuck["status"] == "STALL", stuck["reason"]
            assert stuck["sum_lag"] == len(first)

        wait_for(lambda: loop.stats.records == len(first), "the backlog to be projected")
        wait_for(lambda: service.health()[0] == 200, "/healthz 200")
        assert value(service.metrics(), "nyc311_stalled_seconds", service="projector") == 0
        wait_for(lambda: only_group(lag_json(settings, "--group", group, "--window", "1"))[
            "sum_lag"] == 0, "Kafka's copy of the offsets to catch up")

        with database_refusing(base_settings, settings):
            produce(settings, second)  # its batch meets the database away
            _, reason = wait_for(lambda: (r := service.health())[0] == 503
                                 and r[1].startswith("stalled for") and r, "/healthz stalled")
            assert "database unavailable" in reason
            assert value(service.metrics(), "nyc311_stalled_seconds", service="projector") > 0
            stuck = only_group(lag_json(settings, "--group", group, "--interval", "0.3"))
            assert stuck["status"] == "STALL" and stuck["members"] == 1
            assert " not moving over " in stuck["reason"] and "offset " in stuck["reason"]
            assert stuck["sum_lag"] == len(second)

        wait_for(lambda: loop.stats.records == len(events), "the batch to be written")
        wait_for(lambda: service.health()[0] == 200, "/healthz 200 again")
        service.stop()
    finally:
        service.close()
    assert not loop.stats.abandoned
    done = only_group(lag_json(settings, "--group", group, "--window", "1"))
    assert done["status"] == "OK" and done["sum_lag"] == 0
