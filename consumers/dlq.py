"""Dead-letter queue: a record a consumer cannot process goes to ``<topic>.dlq`` untouched.

The original key and value bytes are kept as they were, so a record can be replayed after a fix;
headers say where it came from and why it failed.

Any record the source topic can hold fits its DLQ: the DLQ topic takes its source's
``max.message.bytes`` plus room for the headers (:func:`nyc311.topics.ensure_dlq_room`), and
the DLQ producer's own limit (``message.max.bytes``, which librdkafka checks on the record
*before* compression, where the broker checks the compressed batch) is raised far above any
topic's, so the broker's limit is the one that applies. The producer compresses (lz4), so a
record that a source producer compressed well fits again.

A record the DLQ still refuses for its size (a DLQ topic whose limit was lowered by hand, a
record that compressed far better at its source than lz4 does) is dead-lettered as a
*truncated copy* as a last resort: the first :data:`TRUNCATED_VALUE_BYTES` of its value, with
the original value's size and SHA-256 in headers (likewise for a key over
:data:`TRUNCATED_KEY_BYTES`; its own headers are left out when they are large). The original
stays in the source topic at the coordinates the headers give; ``nyc311 dlq replay`` refuses a
truncated copy rather than replay it as the record.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from nyc311.kafka import PRODUCER_DEFAULTS
from nyc311.settings import Settings
from nyc311.topics import dlq_topic

log = logging.getLogger(__name__)

MAX_ERROR_MESSAGE = 2_000

HEADER_SOURCE_TOPIC = "source_topic"
HEADER_SOURCE_PARTITION = "source_partition"
HEADER_SOURCE_OFFSET = "source_offset"
HEADER_ERROR_CLASS = "error_class"
HEADER_ERROR_MESSAGE = "error_message"
HEADER_CONSUMER_GROUP = "consumer_group"
HEADER_FAILED_AT = "failed_at"
# only on a truncated copy
HEADER_TRUNCATED = "truncated"  # what was cut: "value", "key", "headers", comma-separated
HEADER_ORIGINAL_SIZE = "original_size"  # bytes of the original value
HEADER_ORIGINAL_SHA256 = "original_sha256"  # hex SHA-256 of the original value
HEADER_ORIGINAL_KEY_SIZE = "original_key_size"  # when the key was cut
HEADER_ORIGINAL_KEY_SHA256 = "original_key_sha256"
HEADER_ORIGINAL_HEADERS = "original_headers"  # how many of the record's headers were left out

TRUNCATED_VALUE_BYTES = 16 * 1024
TRUNCATED_KEY_BYTES = 1024
TRUNCATED_HEADERS_BYTES = 8 * 1024  # the record's own headers are kept up to this many bytes

DLQ_PRODUCER: dict[str, Any] = {
    **PRODUCER_DEFAULTS,
    # librdkafka checks this on the uncompressed record; the DLQ topic's max.message.bytes (on
    # the compressed batch) is the limit that matters, so this one must never be the lower
    "message.max.bytes": 100_000_000,
    # a delivery that cannot happen is reported in 30 s, and the consume loop waits between
    # attempts while polling, so its group membership holds
    "message.timeout.ms": 30_000,
}

# the record (or the batch holding it) is larger than the broker or the producer takes
SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


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


def truncated_copy(msg: Message, error: BaseException, group_id: str
                   ) -> tuple[bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]:
    """(key, value, headers) of the last-resort copy of ``msg``: cut to a size any DLQ takes,
    with what was cut and the original's size and SHA-256 in headers."""
    key, value = msg.key(), msg.value()
    headers = dlq_headers(msg, error, group_id)[:7]  # ours: the record's own follow them
    own = msg.headers() or []
    if isinstance(own, dict):
        own = list(own.items())
    cut: list[str] = []
    if value is not None and len(value) > TRUNCATED_VALUE_BYTES:
        cut.append("value")
        headers += [(HEADER_ORIGINAL_SIZE, str(len(value)).encode()),
                    (HEADER_ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode())]
        value = value[:TRUNCATED_VALUE_BYTES]
    if key is not None and len(key) > TRUNCATED_KEY_BYTES:
        cut.append("key")
        headers += [(HEADER_ORIGINAL_KEY_SIZE, str(len(key)).encode()),
                    (HEADER_ORIGINAL_KEY_SHA256, hashlib.sha256(key).hexdigest().encode())]
        key = key[:TRUNCATED_KEY_BYTES]
    own_size = sum(len(str(k)) + len(v or b"") for k, v in own)
    if own_size > TRUNCATED_HEADERS_BYTES:
        cut.append("headers")
        headers.append((HEADER_ORIGINAL_HEADERS, str(len(own)).encode()))
        own = []
    if not cut:  # small already: the record was refused for its size anyway; say so
        cut.append("nothing")
    headers.insert(7, (HEADER_TRUNCATED, ",".join(cut).encode()))
    return key, value, headers + [(str(k), v) for k, v in own]


class Letter(NamedTuple):
    """A record to dead-letter, why, and whether its truncated copy is to be sent instead."""

    msg: Message
    error: BaseException
    truncated: bool = False


class DeadLetterInterrupted(RuntimeError):
    """The caller asked to stop while dead letters were still waiting for Kafka."""


class DeadLetterWriter:
    """Produces dead letters and reports, per record, whether Kafka acknowledged it.

    Per-record results (not one error for all) let the consume loop send a truncated copy of
    the one record the DLQ refuses for its size and keep waiting for the others."""

    def __init__(self, settings: Settings, **config_overrides: Any) -> None:
        self._config = settings.kafka_config(**{**DLQ_PRODUCER, **config_overrides})
        self._producer: Producer | None = None  # no network in __init__

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self._config)
        return self._producer

    def write(self, letters: Sequence[Letter], group_id: str,
              should_stop: Callable[[], bool] = lambda: False) -> list[KafkaError | None]:
        """Produce ``letters`` and wait for Kafka; the error of each (None: acknowledged).
        Raises :class:`DeadLetterInterrupted` when ``should_stop()`` turns true meanwhile."""
        producer = self.producer
        results: list[KafkaError | None] = [None] * len(letters)
        for i, letter in enumerate(letters):
            msg = letter.msg
            if letter.truncated:
                key, value, headers = truncated_copy(msg, letter.error, group_id)
            else:
                key, value = msg.key(), msg.value()
                headers = dlq_headers(msg, letter.error, group_id)

            def delivered(err: KafkaError | None, _msg: Message, i: int = i) -> None:
                results[i] = err

            while True:
                try:
                    producer.produce(dlq_topic(str(msg.topic())), value=value, key=key,
                                     headers=headers, on_delivery=delivered)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    producer.poll(0.1)
                except KafkaException as exc:  # refused before sending (its size, mostly)
                    results[i] = exc.args[0]
                    break
        while producer.flush(0.5) > 0:
            if should_stop():
                raise DeadLetterInterrupted("stopped while dead letters waited for Kafka")
        return results

    def close(self, timeout: float = 5.0) -> int:
        """Wait up to ``timeout`` for what is in flight, then drop the rest; how many were
        dropped (their records were not committed: they are read and dead-lettered again)."""
        if self._producer is None:
            return 0
        left = self._producer.flush(timeout)
        if left:
            self._producer.purge()
            self._producer.flush(0)
        return left

