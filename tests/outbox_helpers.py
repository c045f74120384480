"""Test helpers for the survey page's outbox: wait for the relay, read what reached Kafka."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from nyc311.settings import Settings
from schemas.serde import Serde
from storage.db import connect

ANSWERS_TOPIC = "nyc311.survey-answered"
RELAY_WAIT_SECONDS = 180.0  # a bound on a hung relay, not a speed expectation


def unsent(settings: Settings) -> int:
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM survey_answer_outbox WHERE sent_at IS NULL").fetchone()
    assert row is not None
    return int(row[0])


def relayed(settings: Settings, timeout: float = RELAY_WAIT_SECONDS) -> None:
    """Wait until the relay has every stored answer acknowledged by Kafka (the app must be
    running, or have stopped with nothing left)."""
    deadline = time.monotonic() + timeout
    while (left := unsent(settings)) > 0:
        assert time.monotonic() < deadline, f"{left} answers still unsent after {timeout:.0f} s"
        time.sleep(0.05)


def _watermarks(consumer: Consumer, partition: TopicPartition) -> tuple[int, int]:
    """Low and high offsets; a topic created a moment ago may still be electing its leaders."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return consumer.get_watermark_offsets(partition, timeout=10)
        except KafkaException:  # NOT_LEADER_FOR_PARTITION and the like, until elected
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def read_answers(settings: Settings, wait: bool = True) -> list[dict]:
    """Every SurveyAnswered on the topic, read up to the high watermark of each partition.

    With ``wait``, first waits until the outbox has nothing unsent: the relay marks a row sent
    only after Kafka acknowledged it, so every stored answer is then below the watermark.
    """
    if wait:
        relayed(settings)
    topic = settings.topic(ANSWERS_TOPIC)
    consumer = Consumer(settings.kafka_config(**{
        "group.id": f"survey-reader-{uuid.uuid4()}", "enable.auto.commit": False}))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p))
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records, serde = [], Serde()
        while ends:
            msg = consumer.poll(10)
            assert msg is not None, f"timed out reading {topic}"
            assert msg.error() is None, msg.error()
            record = serde.decode("survey_answered", msg.value())
            records.append({k: str(v) if isinstance(v, uuid.UUID) else v
                            for k, v in record.items()})
            if (msg.offset() or 0) + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
        return records
    finally:
        consumer.close()
