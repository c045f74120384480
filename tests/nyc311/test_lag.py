"""`nyc311 lag` and the lag exporter against the real broker, checked against Kafka's own tool.

The committed offsets, log ends and lags must be the numbers `kafka-consumer-groups --describe`
prints; the statuses must follow what the consumers really do (a stopped projector, a member
that owns partitions and does not commit, a group that never committed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTP
from prometheus_client.parser import text_string_to_metric_families

from consumers.projector import GROUP_ID as PROJECTOR
from nyc311.cli import main
from nyc311.lag import PROBE_GROUP
from producers.simulate import simulate_month
from storage.offsets import load_group
from tests.helpers import produce, project

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cli_env(settings) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "NYC311_TOPIC_PREFIX": settings.topic_prefix}


def lag_json(settings, *args: str, exit_code: int = 0) -> dict:
    result = CliRunner().invoke(main, ["lag", "--json", *args], env=cli_env(settings),
                                catch_exceptions=False)
    assert result.exit_code == exit_code, result.output
    return json.loads(result.output)


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
            assert row["LAG"] == ("-" if p["lag"] is None else str(p["lag"]))
            assert (row["CONSUMER-ID"], row["HOST"], row["CLIENT-ID"]) == (
                p["consumer_id"], p["host"], p["client_id"])
        # and the numbers are the ones this test made
        assert [(ours[(topic, i)]["committed"], ours[(topic, i)]["log_end"],
                 ours[(topic, i)]["lag"]) for i in range(3)] == [(5, 12, 7), (7, 7, 0),
                                                                 (None, 5, None)]

        # over a window: the member owns partition 0 and does not move past 5 while lag is 7
        group_report = only_group(lag_json(settings, "--group", group, "--window", "3",
                                           "--interval", "0.3"))
        ours = by_partition(group_report)
    assert group_report["status"] == "STALL"
    assert group_report["reason"].startswith(f"{topic}[0]: offset 5 not moving")
    assert [ours[(topic, i)]["status"] for i in range(3)] == ["STALL", "OK", "OK"]
    assert ours[(topic, 0)]["lag_seconds"] > 0
    assert ours[(topic, 1)]["lag_seconds"] == 0
    assert ours[(topic, 2)]["lag_seconds"] is None
    assert group_report["sum_lag"] == group_report["max_lag"] == 7


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
            for p in caught_up["partitions"]} == truth
    assert len(truth) == 6  # every partition of both topics was consumed: every lag is counted

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
    assert report["status"] == "OK" and report["reason"].startswith("no committed offsets")
    assert {p["partition"]: (p["committed"], p["log_end"], p["lag"])
            for p in report["partitions"]} == {0: (None, 3, None), 1: (None, 0, None),
                                               2: (None, 0, None)}
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    _, text = http_get(f"http://127.0.0.1:{port}/metrics")
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
        proc = subprocess.Popen(
            [sys.executable, "-m", "nyc311.cli", "run", "lag-exporter", "--host", "127.0.0.1",
             "--port", str(port), "--interval", "0.3", "--window", "3", "--cluster-name", "t"],
            cwd=REPO, env={**os.environ, **cli_env(settings), "NYC311_LOG_FORMAT": "text"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
            assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
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
    assert [partition("kafka_consumergroup_group_lag", p) for p in range(3)] == [7, 0, None]
    assert partition("kafka_consumergroup_group_lag_seconds", 0) > 0
    assert partition("kafka_consumergroup_group_lag_seconds", 1) == 0
    per_group = {"cluster_name": "t", "group": group}
    simple = {**per_group, "is_simple_consumer": "false"}
    assert metrics[("kafka_consumergroup_group_max_lag", frozenset(simple.items()))] == 7
    assert metrics[("kafka_consumergroup_group_max_lag_seconds", frozenset(simple.items()))] > 0
    assert metrics[("kafka_consumergroup_group_sum_lag", frozenset(per_group.items()))] == 7
    assert metrics[("kafka_consumergroup_group_topic_sum_lag",
                    frozenset({**per_group, "topic": topic}.items()))] == 7
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "nyc311.cli", "lag", "--watch", "--json", "--interval", "0.2",
         "--window", "2", "--group", group],
        cwd=REPO, env={**os.environ, **cli_env(settings)}, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert [only_group(r)["samples"] for r in lines] == [1, 2, 2]
    assert all(only_group(r)["status"] == "OK" and only_group(r)["sum_lag"] == 0 for r in lines)
