"""Topic names of the contract and their creation (``nyc311 topics create``).

Services create the topics they use at start-up, so a fresh cluster needs no manual step and a
broker with ``auto.create.topics.enable=false`` works too. Creating an existing topic is not an
error.
"""

from __future__ import annotations

import logging
import os

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from nyc311.settings import Settings
from schemas.serde import EVENT_TYPES

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"


def event_topics(settings: Settings) -> list[str]:
    """The five event topics, with the configured prefix."""
    return [settings.topic(e.topic) for e in EVENT_TYPES.values()]


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def all_topics(settings: Settings) -> list[str]:
    topics = event_topics(settings)
    return topics + [dlq_topic(t) for t in topics]


def default_partitions() -> int:
    return int(os.environ.get("NYC311_TOPIC_PARTITIONS", "6"))


def ensure_topics(settings: Settings, topics: list[str], partitions: int | None = None,
                  replication_factor: int = -1, timeout: float = 30.0) -> list[str]:
    """Create the missing ``topics``; return the ones created. ``-1`` = the broker's default."""
    admin = AdminClient(settings.kafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    count = partitions or default_partitions()
    # Kept forever: a rebuild replays the topics' whole history, and a dead letter waits for
    # its replay however long the fix takes.
    config = {"retention.ms": "-1"}
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=count, replication_factor=replication_factor, config=config)
         for t in missing],
        operation_timeout=timeout,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result()
            created.append(topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        log.info("created topics %s with %d partitions", created, count)
    return created
