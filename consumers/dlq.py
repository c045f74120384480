"""Dead-letter queue: a record a consumer cannot process goes to ``<topic>.dlq`` untouched.

The original key and value bytes are kept as they were, so a record can be replayed after a fix;
headers say where it came from and why it failed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import Message

from nyc311.topics import dlq_topic
from producers.producer import EventProducer

MAX_ERROR_MESSAGE = 2_000

HEADER_SOURCE_TOPIC = "source_topic"
HEADER_SOURCE_PARTITION = "source_partition"
HEADER_SOURCE_OFFSET = "source_offset"
HEADER_ERROR_CLASS = "error_class"
HEADER_ERROR_MESSAGE = "error_message"
HEADER_CONSUMER_GROUP = "consumer_group"
HEADER_FAILED_AT = "failed_at"


def dlq_headers(msg: Message, error: BaseException,
                group_id: str) -> list[tuple[str, str | bytes | None]]:
    headers: list[tuple[str, str | bytes | None]] = [
        (HEADER_SOURCE_TOPIC, str(msg.topic()).encode()),
        (HEADER_SOURCE_PARTITION, str(msg.partition()).encode()),
        (HEADER_SOURCE_OFFSET, str(msg.offset()).encode()),
        (HEADER_ERROR_CLASS, type(error).__name__.encode()),
        (HEADER_ERROR_MESSAGE, str(error)[:MAX_ERROR_MESSAGE].encode("utf-8", "replace")),
        (HEADER_CONSUMER_GROUP, group_id.encode()),
        (HEADER_FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]
    # Keep the record's own headers, after ours, so nothing the producer said is lost.
    original = msg.headers() or []
    if isinstance(original, dict):
        original = list(original.items())
    return headers + [(str(k), v) for k, v in original]


def dead_letter(producer: EventProducer, failures: list[tuple[Message, BaseException]],
                group_id: str) -> None:
    """Produce every failure to its DLQ and wait until all are acknowledged."""
    for msg, error in failures:
        producer.produce_raw(dlq_topic(str(msg.topic())), msg.key(), msg.value(),
                             headers=dlq_headers(msg, error, group_id))
    producer.flush()
