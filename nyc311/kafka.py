"""Kafka for every service: the one way events enter it, log-end offsets, and retry backoff.

The producer is idempotent and never loses a delivery error:
``enable.idempotence`` (which implies ``acks=all`` and bounded in-flight requests) keeps a
retried send from writing a duplicate or reordering a request's events; every record is keyed
(by request id, or by agency for reopen requests) so one request's events stay in order within
a topic. Delivery reports are collected by the callback and raised from :meth:`flush`, so a
caller that flushes before it reports success never claims an event that did not land.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaTP
from confluent_kafka.admin import AdminClient, OffsetSpec

from nyc311.settings import Settings
from schemas.serde import EVENT_TYPES, Record, Serde

log = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "message.timeout.ms": 120_000,
}
#: For a bulk producer that only needs flush() to raise (the importer): a delivery report only
#: for a record that failed, saving a Python call per record. Not for callers whose per-record
#: callbacks record success (the survey outbox relay, the DLQ), which would then never fire.
BULK_OVERRIDES: dict[str, Any] = {"delivery.report.only.error": True}


POLL_EVERY = 1000  # records produced between two polls for delivery reports


class DeliveryError(RuntimeError):
    """One or more records could not be delivered; ``errors`` says which and why."""

    def __init__(self, errors: Sequence[str]) -> None:
        shown = "; ".join(errors[:5]) + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else "")
        super().__init__(f"{len(errors)} record(s) not delivered: {shown}")
        self.errors = list(errors)


class EventProducer:
    """Serialise and produce events; ``with EventProducer(...)`` flushes on exit."""

    def __init__(self, settings: Settings, serde: Serde | None = None,
                 **config_overrides: Any) -> None:
        self.settings = settings
        self.serde = serde or Serde()
        self._config = settings.kafka_config(**{**PRODUCER_DEFAULTS, **config_overrides})
        self._producer: Producer | None = None  # no network in __init__
        self._errors: list[str] = []
        self._unpolled = 0
        self._topics: dict[str, str] = {}

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._config)
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()} key={msg.key()!r}: {err}")

    def produce_raw(self, topic: str, key: bytes | None, value: bytes | None,
                    headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        """Produce bytes as they are (DLQ, replays); waits for queue space instead of failing."""
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers,
                                      on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)  # local queue full: serve delivery reports, then retry
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:  # delivery reports, served in bulk: a poll per record
            self._unpolled = 0           # cost a tenth of a bulk import's time
            self.producer.poll(0)

    def send(self, name: str, record: Record) -> None:
        """Encode ``record`` as event ``name`` and produce it to its topic, keyed per contract."""
        event_type = EVENT_TYPES[name]
        value = self.serde.encode(name, record)
        key = str(record[event_type.key_field]).encode()
        self.produce_raw(self.settings.topic(event_type.topic), key, value)

    def send_encoded(self, name: str, key: bytes, value: bytes) -> None:
        """Produce event ``name`` already encoded (by ``Serde.encode``) and keyed."""
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self.settings.topic(EVENT_TYPES[name].topic)
        self.produce_raw(topic, key, value)

    def send_many(self, name: str, records: Iterable[Record]) -> int:
        count = 0
        for record in records:
            self.send(name, record)
            count += 1
        return count

    def flush(self, timeout: float = 120.0) -> None:
        """Wait for every record; raise :class:`DeliveryError` if any did not land."""
        if self._producer is not None:
            remaining = self._producer.flush(timeout)
            if remaining:
                self._errors.append(f"{remaining} record(s) still in flight after {timeout}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(errors)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.flush()
        elif self._producer is not None:
            try:
                self._producer.flush(10)
            except KafkaException:  # the original error matters more
                log.exception("flush after error failed")


TP = tuple[str, int]


def log_end_offsets(admin: AdminClient, partitions: list[TP],
                    timeout: float = 10.0) -> dict[TP, int]:
    """The log-end offset (high watermark) of many partitions in one ListOffsets request."""
    if not partitions:
        return {}
    request = {KafkaTP(t, p): OffsetSpec.latest() for t, p in partitions}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


class Backoff:
    """Exponential backoff with a cap: 0.2 s, 0.4 s, … up to ``cap``."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first, self.cap, self.attempt = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * (2 ** self.attempt))
        self.attempt += 1
        return delay
