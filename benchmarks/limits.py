"""(a) and (b): the two limits the projector cannot beat, measured on the run's own data.

(a) reads and decodes every projected topic, with no database; (b) COPYs the projector's own rows
into the real tables, with no staging and no merge. The projector (c) is reported as a share of
the slower of the two, so its figure says as much about the code as about the machine.

(b) maps events to rows with the projector's own ``consumers.projector.event_rows``, so it
writes exactly the rows the projector would.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.dataset import dataset
from benchmarks.meters import CpuMeter, Marks, Throughput, pid_cpu_seconds
from consumers.loop import ConsumeLoop
from consumers.projector import GROUP_ID, TABLES, Projector, event_rows
from nyc311.kafka import log_end_offsets
from nyc311.settings import Settings
from schemas.serde import BY_TOPIC, Serde
from storage.db import connect

RAW_FETCH = {"fetch.max.bytes": 64 * 2**20, "max.partition.fetch.bytes": 8 * 2**20,
             "queued.max.messages.kbytes": 65536}


def loop_consumer_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka configuration the projector's consume loop uses (fetch sizes included),
    so the raw consumer of (a) reads exactly as the projector does, whatever the loop sets."""
    loop = ConsumeLoop(settings, GROUP_ID, Projector(settings))  # no network until run()
    return dict(loop._consumer_config)


# -- (a) raw consume ------------------------------------------------------------------------------


def topic_partitions(settings: Settings) -> list[tuple[str, int]]:
    topics = Projector(settings).topics
    metadata_ = AdminClient(settings.kafka_config()).list_topics(timeout=10)
    return [(t, p) for t in topics for p in sorted(metadata_.topics[t].partitions)]


def raw_consume(settings: Settings, broker: int | None) -> tuple[Throughput, dict[str, float]]:
    """Read every projected topic in batches and decode every record: no database at all.

    ``broker`` is the local broker's pid, whose CPU is counted, or None.
    """
    partitions = topic_partitions(settings)
    ends = log_end_offsets(AdminClient(settings.kafka_config()), partitions)
    expected = sum(ends.values())
    names = {settings.topic(topic): event.name for topic, event in BY_TOPIC.items()}
    serde = Serde(logical_types=False)  # as the projector decodes
    # the raw limit: the loop's settings, but the largest fetches and local queue (the loop
    # keeps them small to bound its memory), so (a) is what the machine can do
    consumer = Consumer({**loop_consumer_config(settings),
                         **RAW_FETCH,
                         "group.id": settings.group("bench-raw-consume")})
    meter = CpuMeter({"Kafka broker": broker})
    marks = Marks()
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in partitions])
    count = 0
    deadline = time.monotonic() + max(600.0, expected / 1000)
    try:
        while count < expected and time.monotonic() < deadline:
            messages = consumer.consume(settings.batch_size, 1.0)
            for msg in messages:
                if msg.error() is not None:
                    continue
                serde.decode(names[str(msg.topic())], msg.value())
                count += 1
            if messages:
                marks.mark(count)
                if len(marks.points) == 1:
                    meter.start()
                else:
                    meter.stop()
    finally:
        consumer.close()
    if count < expected:
        raise RuntimeError(f"raw consume read {count:,} of {expected:,} records")
    return marks.throughput(count, marks.points[-1][0]), meter.cores()


# -- (b) raw COPY ---------------------------------------------------------------------------------


def raw_copy(settings: Settings, months: list[str], requests: int, seed: int
             ) -> tuple[Throughput, int, dict[str, int], dict[str, float]]:
    """COPY the projector's own rows straight into the real tables of a scratch database
    (``settings``'), in transactions of one batch each: what PostgreSQL can take, with no merge
    at all.

    Only the COPY and COMMIT are timed, on a clock of their own; regenerating the events
    (the same deterministic data set) is not, so it needs no memory for a month of rows.
    """
    rows_by_table: Counter[str] = Counter()
    events = 0
    ends: list[tuple[float, int]] = []  # (COPY clock, events) at the end of each batch
    pg_cpu = 0.0
    buffer: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    with connect(settings, autocommit=True) as conn:
        backend = conn.info.backend_pid

        def flush() -> None:
            nonlocal pg_cpu
            before = time.perf_counter()
            pg_before = pid_cpu_seconds(backend) or 0.0
            with conn.transaction(), conn.cursor() as cur:
                for table in TABLES:
                    rows = buffer.get(table)
                    if not rows:
                        continue
                    with cur.copy(f"COPY {table.name} ({', '.join(table.columns)}) "
                                  "FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    rows_by_table[table.name] += len(rows)
            pg_cpu += (pid_cpu_seconds(backend) or 0.0) - pg_before
            clock = (ends[-1][0] if ends else 0.0) + time.perf_counter() - before
            ends.append((clock, events))
            buffer.clear()

        for name, record in dataset(months, requests, seed):
            for table, row in event_rows(name, record):
                buffer[table].append(row)
            events += 1
            if events % settings.batch_size == 0:
                flush()
        if buffer:
            flush()
    seconds = ends[-1][0] if ends else 0.0
    throughput = Throughput(events, seconds, events - ends[0][1] if ends else events,
                            seconds - ends[0][0] if ends else seconds, len(ends))
    cores = {"PostgreSQL backend": pg_cpu / seconds if seconds else 0.0}
    return throughput, sum(rows_by_table.values()), dict(rows_by_table), cores
