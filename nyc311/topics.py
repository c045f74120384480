"""Topic names of the contract and their creation (``nyc311 topics create``).

Services create the topics they use at start-up, so a fresh cluster needs no manual step and a
broker with ``auto.create.topics.enable=false`` works too. Creating an existing topic is not an
error.

A dead-letter topic must take any record its source topic can hold, plus the headers the
dead-lettering adds: every ``<topic>.dlq`` gets a ``max.message.bytes`` of at least its source
topic's plus :data:`DLQ_HEADER_ROOM`, set when it is created and raised (never lowered) on every
:func:`ensure_topics` when the source topic's limit has grown or the DLQ predates this rule.
"""

from __future__ import annotations

import logging
import os
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from nyc311.settings import Settings
from schemas.serde import EVENT_TYPES

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"
# Room for the headers the dead-lettering adds (source, error class and message up to 2,000
# characters, group, time, truncation): a few kilobytes; 64 KiB leaves plenty.
DLQ_HEADER_ROOM = 64 * 1024
MAX_MESSAGE_BYTES = "max.message.bytes"


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
    """Create the missing ``topics``; return the ones created. ``-1`` = the broker's default.

    Every DLQ among ``topics`` is made to take any record its source topic can hold: created
    with the source's ``max.message.bytes`` plus :data:`DLQ_HEADER_ROOM`, or raised to that
    when it exists with less (:func:`ensure_dlq_room`)."""
    admin = AdminClient(settings.kafka_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    count = partitions or default_partitions()
    dlqs = [t for t in topics if t.endswith(DLQ_SUFFIX)]
    created = _create(admin, [t for t in missing if t not in dlqs], count, replication_factor,
                      timeout)
    new_dlqs = [t for t in missing if t in dlqs]
    if new_dlqs:
        sources = sorted({t.removesuffix(DLQ_SUFFIX) for t in new_dlqs})
        limits = max_message_bytes(admin, sources, timeout)
        for dlq in new_dlqs:
            source = dlq.removesuffix(DLQ_SUFFIX)
            room = {MAX_MESSAGE_BYTES: str(limits[source] + DLQ_HEADER_ROOM)} \
                if source in limits else {}
            created += _create(admin, [dlq], count, replication_factor, timeout, room)
    old_dlqs = [t for t in dlqs if t not in missing]
    if old_dlqs:
        ensure_dlq_room(admin, old_dlqs, timeout)
    return created


def _create(admin: AdminClient, missing: list[str], count: int, replication_factor: int,
            timeout: float, extra: dict[str, str] | None = None) -> list[str]:
    if not missing:
        return []
    # Kept forever: a rebuild replays the topics' whole history, and a dead letter waits for
    # its replay however long the fix takes.
    config = {"retention.ms": "-1", **(extra or {})}
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


def max_message_bytes(admin: AdminClient, topics: list[str],
                      timeout: float = 30.0) -> dict[str, int]:
    """Each topic's ``max.message.bytes`` (its own, or the broker default it inherits). A topic
    created a moment ago may be unknown to the broker answering for a moment: asked again."""
    deadline = time.monotonic() + timeout
    limits: dict[str, int] = {}
    wanted = list(topics)
    while wanted:
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in wanted],
                                         request_timeout=timeout)
        unknown = []
        for resource, future in futures.items():
            try:
                entry = future.result().get(MAX_MESSAGE_BYTES)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or \
                        time.monotonic() > deadline:
                    raise
                unknown.append(resource.name)
                continue
            if entry is not None and entry.value is not None:
                limits[resource.name] = int(entry.value)
        wanted = unknown
        if wanted:
            time.sleep(0.1)
    return limits


def ensure_dlq_room(admin: AdminClient, dlqs: list[str], timeout: float = 30.0) -> dict[str, int]:
    """Raise each DLQ's ``max.message.bytes`` to its source topic's plus
    :data:`DLQ_HEADER_ROOM` where it is lower; return every DLQ's limit after that."""
    sources = {dlq: dlq.removesuffix(DLQ_SUFFIX) for dlq in dlqs}
    limits = max_message_bytes(admin, list(dlqs) + sorted(set(sources.values())), timeout)
    wanted = {dlq: limits[src] + DLQ_HEADER_ROOM for dlq, src in sources.items()
              if src in limits and dlq in limits and limits[dlq] < limits[src] + DLQ_HEADER_ROOM}
    if wanted:
        futures = admin.incremental_alter_configs([
            ConfigResource(ResourceType.TOPIC, dlq, incremental_configs=[ConfigEntry(
                MAX_MESSAGE_BYTES, str(size), incremental_operation=AlterConfigOpType.SET)])
            for dlq, size in wanted.items()], request_timeout=timeout)
        for future in futures.values():
            future.result()
        for dlq, size in sorted(wanted.items()):
            log.info("%s takes records up to %d bytes now (was %d): its source's limit plus "
                     "room for the dead-letter headers", dlq, size, limits[dlq])
        limits.update(wanted)
    return {dlq: limits[dlq] for dlq in dlqs if dlq in limits}
