"""Dead letters, read: ``nyc311 dlq list``, and what :mod:`operations.dlq.replay` reads.

A dead letter is the original record, byte for byte, plus headers saying where it came from and
why it failed (:mod:`consumers.dlq`). Listing reads the ``<topic>.dlq`` topics from the beginning
up to their end at the time of the call, with no consumer group and no commit, so it changes
nothing and can be run at any time.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
)
from confluent_kafka import TopicPartition as KafkaTP

from consumers.dlq import (
    HEADER_CONSUMER_GROUP,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_MESSAGE,
    HEADER_FAILED_AT,
    HEADER_ORIGINAL_HEADERS,
    HEADER_ORIGINAL_KEY_SHA256,
    HEADER_ORIGINAL_KEY_SIZE,
    HEADER_ORIGINAL_SHA256,
    HEADER_ORIGINAL_SIZE,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    HEADER_TRUNCATED,
)
from nyc311.settings import Settings
from nyc311.topics import DLQ_SUFFIX, dlq_topic, event_topics

log = logging.getLogger(__name__)

HEADER_REPLAY_OF = "replay_of"
READ_TIMEOUT = 60.0  # seconds a read may go without progress before it is given up

_OURS = (HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION, HEADER_SOURCE_OFFSET, HEADER_ERROR_CLASS,
         HEADER_ERROR_MESSAGE, HEADER_CONSUMER_GROUP, HEADER_FAILED_AT, HEADER_TRUNCATED,
         HEADER_ORIGINAL_SIZE, HEADER_ORIGINAL_SHA256, HEADER_ORIGINAL_KEY_SIZE,
         HEADER_ORIGINAL_KEY_SHA256, HEADER_ORIGINAL_HEADERS)

Headers = tuple[tuple[str, bytes | None], ...]


class DlqError(RuntimeError):
    """A DLQ operation could not be done (unknown topic, Kafka unavailable, fenced replay)."""


# -- dead letters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    """One record of a ``.dlq`` topic: where it is, where it came from, why, and the record."""

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    error_class: str
    error_message: str
    consumer_group: str
    failed_at: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()  # the record's own headers, as its producer sent them
    truncated: str = ""  # a truncated copy: what was cut ("value", "key", "headers")
    original_size: int | None = None  # a truncated copy: the original value's bytes
    original_sha256: str = ""  # a truncated copy: the original value's SHA-256 (hex)

    @property
    def source_id(self) -> str:
        """``topic:partition:offset`` of the record that failed: what "once each" counts."""
        if self.source_partition is None or self.source_offset is None:  # not our headers
            return f"{self.dlq_topic}:{self.dlq_partition}:{self.dlq_offset}"
        return f"{self.source_topic}:{self.source_partition}:{self.source_offset}"

    @property
    def replay_of(self) -> str | None:
        """The dead letter this record was a replay of, if it was one."""
        for name, value in self.headers:
            if name == HEADER_REPLAY_OF and value is not None:
                return value.decode("utf-8", "replace")
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "dlq_topic": self.dlq_topic, "dlq_partition": self.dlq_partition,
            "dlq_offset": self.dlq_offset, "source_topic": self.source_topic,
            "source_partition": self.source_partition, "source_offset": self.source_offset,
            "error_class": self.error_class, "error_message": self.error_message,
            "consumer_group": self.consumer_group, "failed_at": self.failed_at,
            "key": header_text(self.key), "value_bytes": len(self.value or b""),
            "replay_of": self.replay_of, "truncated": self.truncated or None,
            "original_size": self.original_size, "original_sha256": self.original_sha256 or None,
        }

    def truncation(self) -> str:
        """What a truncated copy kept, for messages ("" when the record is whole)."""
        if not self.truncated:
            return ""
        kept = len(self.value or b"")
        size = f"{kept:,} of {self.original_size:,} bytes" if self.original_size is not None \
            else f"{kept:,} bytes"
        sha = f", original sha256 {self.original_sha256}" if self.original_sha256 else ""
        return f"a truncated copy ({self.truncated} cut; {size} kept{sha})"

    def render(self) -> str:
        """One line for a terminal."""
        message = " ".join(self.error_message.split())
        if len(message) > 160:
            message = message[:157] + "..."
        source = f"{self.source_topic}[{dash(self.source_partition)}]@{dash(self.source_offset)}"
        replay = f" replay_of={self.replay_of}" if self.replay_of else ""
        cut = f"  TRUNCATED: {self.truncation()}" if self.truncated else ""
        return (f"{self.dlq_topic}[{self.dlq_partition}]@{self.dlq_offset}  from {source}  "
                f"{self.failed_at}  key={header_text(self.key)!r}  {self.error_class}: "
                f"{message}{replay}{cut}")


def header_text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _int(value: bytes | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse(msg: Message) -> DeadLetter:
    """A DLQ message as a :class:`DeadLetter`. The first header of each of our names is ours;
    everything else is the original record's own (kept in order)."""
    raw = msg.headers() or []
    if isinstance(raw, dict):
        raw = list(raw.items())
    ours: dict[str, bytes | None] = {}
    own: list[tuple[str, bytes | None]] = []
    for name, value in raw:
        data = value.encode() if isinstance(value, str) else value
        if name in _OURS and name not in ours:
            ours[name] = data
        else:
            own.append((str(name), data))
    topic = str(msg.topic())
    source = header_text(ours.get(HEADER_SOURCE_TOPIC)) or topic.removesuffix(DLQ_SUFFIX)
    return DeadLetter(
        dlq_topic=topic, dlq_partition=int(msg.partition() or 0), dlq_offset=int(msg.offset() or 0),
        source_topic=source,
        source_partition=_int(ours.get(HEADER_SOURCE_PARTITION)),
        source_offset=_int(ours.get(HEADER_SOURCE_OFFSET)),
        error_class=header_text(ours.get(HEADER_ERROR_CLASS)) or "",
        error_message=header_text(ours.get(HEADER_ERROR_MESSAGE)) or "",
        consumer_group=header_text(ours.get(HEADER_CONSUMER_GROUP)) or "",
        failed_at=header_text(ours.get(HEADER_FAILED_AT)) or "",
        key=msg.key(), value=msg.value(), headers=tuple(own),
        truncated=header_text(ours.get(HEADER_TRUNCATED)) or "",
        original_size=_int(ours.get(HEADER_ORIGINAL_SIZE)),
        original_sha256=header_text(ours.get(HEADER_ORIGINAL_SHA256)) or "",
    )


# -- topics ---------------------------------------------------------------------------------------


def source_topic(settings: Settings, name: str) -> str:
    """The full name of an event topic, given as the contract name (``nyc311.request-created``),
    the prefixed name, or its DLQ's name."""
    known = event_topics(settings)
    name = name.removesuffix(DLQ_SUFFIX)
    for candidate in (name, settings.topic(name)):
        if candidate in known:
            return candidate
    raise DlqError(f"unknown topic {name!r}; the event topics are: {', '.join(known)}")


def dlq_partitions(consumer: Consumer, topic: str) -> list[int] | None:
    """The topic's partitions, or None when it does not exist."""
    meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if meta is None or meta.error is not None:
        return None
    return sorted(meta.partitions)


def dlq_reader(settings: Settings, group: str | None = None) -> Consumer:
    """A consumer for reading by assignment; it commits nothing unless told to."""
    return Consumer(settings.kafka_config(**{
        "group.id": group or settings.group(f"nyc311-dlq-reader-{uuid.uuid4().hex[:8]}"),
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }))


def read_partition(consumer: Consumer, topic: str, partition: int, start: int,
                    timeout: float = READ_TIMEOUT) -> Iterator[Message]:
    """The partition's records from ``start`` (or its beginning) up to its end as of now."""
    tp = KafkaTP(topic, partition)
    low, high = consumer.get_watermark_offsets(tp, timeout=30)
    begin = max(start, low) if start >= 0 else low
    if begin >= high:
        return
    consumer.assign([KafkaTP(topic, partition, begin)])
    try:
        stalled_since = time.monotonic()
        while True:
            msg = consumer.poll(1.0)
            if msg is None:
                if time.monotonic() - stalled_since > timeout:
                    raise DlqError(f"{topic}[{partition}]: no progress for {timeout:.0f} s "
                                   f"before offset {high}")
                continue
            stalled_since = time.monotonic()
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:  # the end: markers included
                    return
                if err.fatal():
                    raise KafkaException(err)
                log.warning("reading %s[%d]: %s", topic, partition, err)
                continue
            offset = int(msg.offset() or 0)
            if offset >= high:
                return
            yield msg
            if offset + 1 >= high:
                return
    finally:
        consumer.unassign()


# -- list -----------------------------------------------------------------------------------------


def list_dead_letters(settings: Settings, topic: str | None = None,
                      limit: int | None = None) -> Iterator[DeadLetter]:
    """Every dead letter of one DLQ (``topic``: its source topic) or of all, oldest first per
    partition, without committing anything."""
    topics = [dlq_topic(source_topic(settings, topic))] if topic else \
        [dlq_topic(t) for t in event_topics(settings)]
    if limit is not None and limit <= 0:
        return
    consumer = dlq_reader(settings)
    count = 0
    try:
        for name in topics:
            partitions = dlq_partitions(consumer, name)
            if partitions is None:
                if topic:
                    raise DlqError(f"{name} does not exist (no dead letter yet)")
                continue
            for partition in partitions:
                for msg in read_partition(consumer, name, partition, OFFSET_BEGINNING):
                    yield parse(msg)
                    count += 1
                    if limit is not None and count >= limit:
                        return
    finally:
        consumer.close()
