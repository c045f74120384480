"""Records of any size the source topic takes are dead-lettered, and nothing waits silently.

Against the real broker and database: a record as large as its topic's ``max.message.bytes``
that cannot be decoded lands whole in ``<topic>.dlq`` and the records after it are projected; a
record its DLQ cannot take (a DLQ whose limit was lowered by hand) is dead-lettered as a
truncated copy with the original's size and SHA-256, which ``nyc311 dlq replay`` refuses; and a
DLQ that takes not even that copy leaves the consumer retrying, reported as stalled, until the
DLQ is fixed and the full record lands.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from prometheus_client import CollectorRegistry

from cli import main
from consumers.dlq import TRUNCATED_VALUE_BYTES
from consumers.loop import ConsumeLoop
from consumers.projector import GROUP_ID, Projector
from nyc311.kafka import log_end_offsets
from nyc311.metrics import Metrics
from nyc311.topics import (
    DLQ_HEADER_ROOM,
    all_topics,
    dlq_topic,
    ensure_topics,
    max_message_bytes,
)
from operations.dlq.letters import list_dead_letters
from tests.consumers.test_projector import month_events
from tests.helpers import cli_env, expected_tables, fetch_tables, produce, project
from tests.nyc311.test_metrics import Running, value, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture
def serving() -> Iterator[Callable[[ConsumeLoop], Running]]:
    """Runs a consume loop on a thread with its /metrics and /healthz; stops it at the end."""
    started: list[Running] = []

    def start(loop: ConsumeLoop) -> Running:
        started.append(Running(loop).start())
        return started[-1]

    yield start
    for each in started:
        each.close()


def log_ends(settings, topic: str) -> dict[tuple[str, int], int]:
    return log_end_offsets(AdminClient(settings.kafka_config()),
                           [(topic, p) for p in range(PARTITIONS)])


def set_max_message_bytes(settings, topic: str, size: int) -> None:
    admin = AdminClient(settings.kafka_config())
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry(
        "max.message.bytes", str(size), incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    wait_for_limit(settings, topic, size)


def wait_for_limit(settings, topic: str, size: int) -> None:
    """Until the broker reports ``size`` as the topic's max.message.bytes (a change made through
    the controller reaches the broker's answers a moment later)."""
    admin = AdminClient(settings.kafka_config())
    wait_for(lambda: max_message_bytes(admin, [topic])[topic] == size,
             f"{topic}: max.message.bytes {size}")


def produce_big(settings, topic: str, values: dict[int, bytes], key: bytes = b"big",
                headers: list[tuple[str, bytes]] | None = None) -> None:
    """``values[p]`` to partition p, uncompressed, by a producer that allows large records (as
    an upstream producer may): the topic's own limit is the one that decides."""
    producer = Producer(settings.kafka_config(**{
        "message.max.bytes": 4 * max(len(v) for v in values.values()) + 1_000_000,
        "compression.type": "none", "linger.ms": 0, "enable.idempotence": True}))
    errors: list = []
    for partition, data in values.items():
        producer.produce(topic, value=data, key=key, partition=partition, headers=headers,
                         on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(60) == 0
    assert errors == [None] * len(values), errors  # the source topic took every one


def test_ensure_topics_gives_every_dlq_its_source_limit_plus_header_room(settings, topics):
    admin = AdminClient(settings.kafka_config())
    source = settings.topic("nyc311.request-created")
    dlq = dlq_topic(source)
    limits = max_message_bytes(admin, [source, dlq])
    assert limits[dlq] == limits[source] + DLQ_HEADER_ROOM

    set_max_message_bytes(settings, dlq, limits[source])  # a DLQ made before this rule
    set_max_message_bytes(settings, source, 2 * limits[source])  # a source allowed more
    assert ensure_topics(settings, all_topics(settings)) == []  # nothing created, but:
    wait_for_limit(settings, dlq, 2 * limits[source] + DLQ_HEADER_ROOM)

    set_max_message_bytes(settings, dlq, 10 * limits[source])  # raised by hand: kept
    ensure_topics(settings, all_topics(settings))
    assert max_message_bytes(admin, [dlq])[dlq] == 10 * limits[source]


def test_a_record_as_large_as_its_topic_takes_is_dead_lettered_whole(settings, topics, db):
    source = settings.topic("nyc311.request-created")
    limit = max_message_bytes(AdminClient(settings.kafka_config()), [source])[source]
    events = month_events(60, seed=31)
    # one undecodable record a few hundred bytes under the topic's limit (batch and record
    # overhead), on every partition, between valid events
    big = {p: bytes([0x7B]) + os.urandom(limit - 400) for p in range(PARTITIONS)}
    produce(settings, events[:len(events) // 2])
    produce_big(settings, source, big)
    produce(settings, events[len(events) // 2:])

    stats = project(settings)
    assert stats.dead_lettered == PARTITIONS
    assert fetch_tables(db) == expected_tables(events)  # the records after them, too

    letters = list(list_dead_letters(settings, "nyc311.request-created"))
    assert sorted((d.source_partition, d.value) for d in letters) == sorted(big.items())
    assert all(d.truncated == "" and d.original_size is None for d in letters)
    assert {d.error_class for d in letters} == {"DecodeError"}


def test_a_record_its_dlq_cannot_take_is_dead_lettered_truncated_and_never_replayed(
        settings, topics, db):
    source = settings.topic("nyc311.request-created")
    set_max_message_bytes(settings, dlq_topic(source), 64 * 1024)  # lowered by hand
    events = month_events(40, seed=32)
    original = b"\x00\x01" + os.urandom(300_000)
    produce(settings, events[:20])
    produce_big(settings, source, {1: original}, key=b"too-big",
                headers=[("upstream-trace", b"abc")])
    produce(settings, events[20:])

    stats = project(settings)
    assert stats.dead_lettered == 1
    assert fetch_tables(db) == expected_tables(events)

    (letter,) = list_dead_letters(settings, "nyc311.request-created")
    assert letter.truncated == "value"
    assert letter.value == original[:TRUNCATED_VALUE_BYTES]
    assert letter.original_size == len(original)
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()
    assert (letter.source_topic, letter.source_partition, letter.key) == (source, 1, b"too-big")
    assert letter.headers == (("upstream-trace", b"abc"),)  # the record's own, kept
    assert letter.error_class == "DecodeError"

    env = cli_env(settings)
    listed = CliRunner().invoke(main, ["dlq", "list", "--json"], env=env,
                                catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    row = json.loads(listed.output.splitlines()[0])
    assert (row["truncated"], row["original_size"], row["value_bytes"]) == (
        "value", len(original), TRUNCATED_VALUE_BYTES)

    for args in (["--dry-run"], []):
        done = CliRunner().invoke(main, ["dlq", "replay", "--topic", "nyc311.request-created",
                                         *args], env=env, catch_exceptions=False)
        assert done.exit_code == 0, done.output
        assert "replay 0 of 1 " in done.stdout or "replayed 0 of 1 " in done.stdout
        assert "1 truncated copy refused" in done.stdout
        assert (f"refused {dlq_topic(source)}[{letter.dlq_partition}]@{letter.dlq_offset}: a "
                f"truncated copy") in done.stderr
        assert f"the record is still in {source}[1]@{letter.source_offset}" in done.stderr
    # nothing went back to the source topic: the projector finds nothing new
    before = log_ends(settings, source)
    assert project(settings).records == 0
    assert log_ends(settings, source) == before


def test_a_dlq_that_takes_not_even_the_truncated_copy_stalls_the_consumer_visibly(
        settings, topics, db, serving):
    source = settings.topic("nyc311.request-created")
    dlq = dlq_topic(source)
    set_max_message_bytes(settings, dlq, 1024)  # below any truncated copy
    events = month_events(30, seed=33)
    original = b"\x05" + os.urandom(200_000)
    produce_big(settings, source, {p: original for p in range(PARTITIONS)})
    produce(settings, events)

    metrics = Metrics("projector", CollectorRegistry())
    loop = ConsumeLoop(replace(settings, stall_seconds=1.0), GROUP_ID, Projector(settings),
                       metrics=metrics)
    service = serving(loop)
    _, reason = wait_for(lambda: (r := service.health())[0] == 503
                         and "stalled for" in r[1] and r, "/healthz 503 stalled")
    assert "cannot dead-letter" in reason and "refuses even a truncated copy" in reason
    text = service.metrics()
    assert value(text, "nyc311_stalled_seconds", service="projector") > 0
    assert value(text, "nyc311_ready", service="projector") == 0
    assert loop.stats.dead_lettered == 0

    ensure_topics(settings, all_topics(settings))  # the fix: the DLQ takes its source's records
    wait_for(lambda: loop.stats.dead_lettered == PARTITIONS, "the records to be dead-lettered")
    wait_for(lambda: service.health()[0] == 200, "/healthz 200 again")
    assert value(service.metrics(), "nyc311_stalled_seconds", service="projector") == 0
    wait_for(lambda: fetch_tables(db) == expected_tables(events), "the rest to be projected")
    service.stop()
    letters = list(list_dead_letters(settings, "nyc311.request-created"))
    assert len(letters) == PARTITIONS
    assert all(d.value == original and not d.truncated for d in letters)  # whole, once fixed
