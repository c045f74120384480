"""Operator tools for the dead-letter queues: ``nyc311 dlq list`` and ``nyc311 dlq replay``.

A dead letter is the original record, byte for byte, plus headers saying where it came from and
why it failed (:mod:`consumers.dlq`). Listing reads the ``<topic>.dlq`` topics from the beginning
up to their end at the time of the call, with no consumer group and no commit, so it changes
nothing and can be run at any time.

Replay sends dead letters back to their source topic (the ``source_topic`` header) with their
original key, value and headers, once each, after the bug or the upstream data that made them
fail has been fixed. "Once each" has to hold across crashes, repeated runs, filters and limits:

- **The ledger** (compacted topic ``nyc311.dlq-replays``) holds one entry per replayed record,
  keyed by the record's source coordinates (``topic:partition:offset``). The replayed records and
  their ledger entries are written in one Kafka transaction, so a crash leaves either both or
  neither (consumers read committed records only, librdkafka's default). A record the DLQ holds
  twice (a crash between the DLQ write and the consumer's commit, or a rebuild meeting the same
  bad record) shares its source coordinates, so it is replayed once too.
- **The cursor**: consumer group ``nyc311-dlq-replay`` commits, per DLQ partition, the offset
  below which every record has been replayed (or found in the ledger), after the transaction
  commits. It spares re-reading old dead letters and shows the records not yet replayed as the
  group's lag in standard tools. A record left out by ``--where-error-class`` or ``--limit``
  stops the cursor; the ledger makes the records replayed beyond it count as done.

A replayed record that fails again is a *new* dead letter, with new headers and a ``replay_of``
header naming the one it came from; a later replay picks it up. Replay after deploying a fix,
not in a loop. Only one replay runs at a time: all share one transactional id, so a second one
fences the first (which then fails without effect).

A *truncated copy* (a record too large for its DLQ, cut to its first bytes with the original's
size and SHA-256 in headers: :mod:`consumers.dlq`) is never replayed: it is not the record.
Replay refuses it, says so per record, and counts it as left; the cursor stops before it. The
original is still in the source topic at the coordinates its headers give.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaTP
from confluent_kafka.admin import AdminClient, NewTopic

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
from nyc311.kafka import PRODUCER_DEFAULTS
from nyc311.settings import Settings
from nyc311.topics import DLQ_SUFFIX, dlq_topic, event_topics

log = logging.getLogger(__name__)

REPLAY_GROUP = "nyc311-dlq-replay"
LEDGER_TOPIC = "nyc311.dlq-replays"
HEADER_REPLAY_OF = "replay_of"
READ_TIMEOUT = 60.0  # seconds a read may go without progress before it is given up
BATCH = 500  # records per replay transaction

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
            "key": _text(self.key), "value_bytes": len(self.value or b""),
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
        source = f"{self.source_topic}[{_dash(self.source_partition)}]@{_dash(self.source_offset)}"
        replay = f" replay_of={self.replay_of}" if self.replay_of else ""
        cut = f"  TRUNCATED: {self.truncation()}" if self.truncated else ""
        return (f"{self.dlq_topic}[{self.dlq_partition}]@{self.dlq_offset}  from {source}  "
                f"{self.failed_at}  key={_text(self.key)!r}  {self.error_class}: {message}{replay}"
                f"{cut}")


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


def _dash(value: int | None) -> str:
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
    source = _text(ours.get(HEADER_SOURCE_TOPIC)) or topic.removesuffix(DLQ_SUFFIX)
    return DeadLetter(
        dlq_topic=topic, dlq_partition=int(msg.partition() or 0), dlq_offset=int(msg.offset() or 0),
        source_topic=source,
        source_partition=_int(ours.get(HEADER_SOURCE_PARTITION)),
        source_offset=_int(ours.get(HEADER_SOURCE_OFFSET)),
        error_class=_text(ours.get(HEADER_ERROR_CLASS)) or "",
        error_message=_text(ours.get(HEADER_ERROR_MESSAGE)) or "",
        consumer_group=_text(ours.get(HEADER_CONSUMER_GROUP)) or "",
        failed_at=_text(ours.get(HEADER_FAILED_AT)) or "",
        key=msg.key(), value=msg.value(), headers=tuple(own),
        truncated=_text(ours.get(HEADER_TRUNCATED)) or "",
        original_size=_int(ours.get(HEADER_ORIGINAL_SIZE)),
        original_sha256=_text(ours.get(HEADER_ORIGINAL_SHA256)) or "",
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


def _partitions(consumer: Consumer, topic: str) -> list[int] | None:
    """The topic's partitions, or None when it does not exist."""
    meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if meta is None or meta.error is not None:
        return None
    return sorted(meta.partitions)


def _reader(settings: Settings, group: str | None = None) -> Consumer:
    """A consumer for reading by assignment; it commits nothing unless told to."""
    return Consumer(settings.kafka_config(**{
        "group.id": group or settings.group(f"nyc311-dlq-reader-{uuid.uuid4().hex[:8]}"),
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }))


def _read_partition(consumer: Consumer, topic: str, partition: int, start: int,
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
    consumer = _reader(settings)
    count = 0
    try:
        for name in topics:
            partitions = _partitions(consumer, name)
            if partitions is None:
                if topic:
                    raise DlqError(f"{name} does not exist (no dead letter yet)")
                continue
            for partition in partitions:
                for msg in _read_partition(consumer, name, partition, OFFSET_BEGINNING):
                    yield parse(msg)
                    count += 1
                    if limit is not None and count >= limit:
                        return
    finally:
        consumer.close()


# -- replay ---------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What a replay did (or, with ``dry_run``, would do)."""

    dlq_topic: str
    dry_run: bool = False
    scanned: int = 0
    replayed: int = 0
    already_replayed: int = 0  # in the ledger, or a duplicate of one replayed now
    left: int = 0  # not replayed now: another error class, over the limit, or truncated
    stopped_at_limit: bool = False
    by_class: Counter[str] = field(default_factory=Counter)
    records: list[DeadLetter] = field(default_factory=list)  # dry run: the ones it would
    refused: list[DeadLetter] = field(default_factory=list)  # truncated copies: never replayed

    def render(self) -> str:
        verb = "would replay" if self.dry_run else "replayed"
        classes = ", ".join(f"{name} {n:,}" for name, n in sorted(self.by_class.items()))
        text = (f"{self.dlq_topic}: {verb} {self.replayed:,} of {self.scanned:,} dead letter(s) "
                f"read" + (f" ({classes})" if classes else "")
                + f"; {self.already_replayed:,} replayed already (by an earlier run, or a "
                f"duplicate in the DLQ); {self.left:,} left for later")
        if self.refused:
            copies = "copy" if len(self.refused) == 1 else "copies"
            text += (f"; {len(self.refused):,} truncated {copies} refused (not the records "
                     f"themselves; see above)")
        if self.stopped_at_limit:
            text += "; stopped at --limit"
        return text

    def refusals(self) -> list[str]:
        """One line per truncated copy refused: which, and where its record still is."""
        return [f"refused {dl.dlq_topic}[{dl.dlq_partition}]@{dl.dlq_offset}: {dl.truncation()}, "
                f"not the record; the record is still in {dl.source_topic}"
                f"[{_dash(dl.source_partition)}]@{_dash(dl.source_offset)} (docs/RUNBOOK.md, "
                f"\"Dead letters\")" for dl in self.refused]


def ledger_topic(settings: Settings) -> str:
    return settings.topic(LEDGER_TOPIC)


def _ensure_ledger(settings: Settings) -> None:
    topic = ledger_topic(settings)
    admin = AdminClient(settings.kafka_config())
    if topic in admin.list_topics(timeout=30).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1,
                                            config={"cleanup.policy": "compact"})],
                                  operation_timeout=30)
    for future in futures.values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def read_ledger(settings: Settings) -> set[str]:
    """Source coordinates of every record replayed so far (committed transactions only)."""
    consumer = _reader(settings)
    done: set[str] = set()
    try:
        topic = ledger_topic(settings)
        for partition in _partitions(consumer, topic) or []:
            for msg in _read_partition(consumer, topic, partition, OFFSET_BEGINNING):
                key = _text(msg.key())
                if key is None:
                    continue
                if msg.value() is None:  # a tombstone
                    done.discard(key)
                else:
                    done.add(key)
    finally:
        consumer.close()
    return done


class _Transactions:
    """The replay's transactional producer: records and ledger entries commit together."""

    def __init__(self, settings: Settings) -> None:
        self.ledger = ledger_topic(settings)
        self.producer = Producer(settings.kafka_config(**{
            **PRODUCER_DEFAULTS, "transactional.id": settings.group(REPLAY_GROUP),
            # at least the delivery timeout; a crashed replay's transaction is aborted by the
            # next init_transactions anyway
            "transaction.timeout.ms": 180_000,
        }))
        self.producer.init_transactions(60)  # also aborts what a crashed replay left open

    def commit(self, records: Sequence[DeadLetter]) -> None:
        now = datetime.now(UTC).isoformat()
        self.producer.begin_transaction()
        try:
            for dl in records:
                headers: list[tuple[str, str | bytes | None]] = [
                    (n, v) for n, v in dl.headers if n != HEADER_REPLAY_OF]
                headers.append((HEADER_REPLAY_OF, dl.source_id.encode()))
                self._produce(dl.source_topic, dl.key, dl.value, headers)
                entry = {"dlq": f"{dl.dlq_topic}:{dl.dlq_partition}:{dl.dlq_offset}",
                         "replayed_to": dl.source_topic, "replayed_at": now,
                         "error_class": dl.error_class}
                self._produce(self.ledger, dl.source_id.encode(), json.dumps(entry).encode(), None)
        except BaseException:
            self.producer.abort_transaction(60)
            raise
        for attempt in range(1, 6):
            try:
                self.producer.commit_transaction(120)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if isinstance(error, KafkaError) and error.retriable() and attempt < 5:
                    log.warning("committing the replay transaction: %s; retrying", error)
                    time.sleep(attempt)
                    continue
                if isinstance(error, KafkaError) and error.txn_requires_abort():
                    self.producer.abort_transaction(60)
                    raise DlqError(f"replay transaction aborted, none of its {len(records)} "
                                   f"record(s) took effect: {error}") from exc
                raise DlqError(f"replay transaction failed ({error}); the ledger tells the next "
                               f"run which of its {len(records)} record(s) took effect") from exc

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, str | bytes | None]] | None) -> None:
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers)
                return
            except BufferError:
                self.producer.poll(0.1)

    def close(self) -> None:
        self.producer.flush(30)


def replay(settings: Settings, topic: str, *, error_classes: Iterable[str] = (),
           limit: int | None = None, dry_run: bool = False, batch: int = BATCH) -> ReplayResult:
    """Replay the dead letters of ``topic``'s DLQ not replayed before (see the module doc)."""
    dlq = dlq_topic(source_topic(settings, topic))
    classes = set(error_classes)
    result = ReplayResult(dlq, dry_run=dry_run)
    cursor_reader = _reader(settings, group=settings.group(REPLAY_GROUP))
    txn: _Transactions | None = None
    try:
        partitions = _partitions(cursor_reader, dlq)
        if partitions is None:
            return result
        if not dry_run:
            _ensure_ledger(settings)
            txn = _Transactions(settings)  # before reading the ledger: nothing left open in it
        done = read_ledger(settings)
        committed = {tp.partition: tp.offset for tp in cursor_reader.committed(
            [KafkaTP(dlq, p) for p in partitions], timeout=30)}
        for partition in partitions:
            if result.stopped_at_limit:
                break
            _replay_partition(cursor_reader, txn, dlq, partition, committed.get(partition, -1),
                              done, classes, limit, batch, result)
    finally:
        cursor_reader.close()
        if txn is not None:
            txn.close()
    return result


def _replay_partition(reader: Consumer, txn: _Transactions | None, dlq: str, partition: int,
                      start: int, done: set[str], classes: set[str], limit: int | None,
                      batch: int, result: ReplayResult) -> None:
    cursor = start if start >= 0 else OFFSET_BEGINNING
    contiguous = True  # every record so far is replayed: the cursor may follow
    pending: list[DeadLetter] = []

    def flush() -> None:
        if txn is not None and pending:
            txn.commit(pending)
        pending.clear()
        if txn is not None and cursor >= 0 and cursor > start:
            reader.commit(offsets=[KafkaTP(dlq, partition, cursor)], asynchronous=False)

    for msg in _read_partition(reader, dlq, partition, cursor):
        dl = parse(msg)
        result.scanned += 1
        if dl.source_id in done:
            result.already_replayed += 1
        elif dl.truncated:  # a truncated copy is not the record: never replay it
            result.left += 1
            result.refused.append(dl)
            contiguous = False
        elif (not classes or dl.error_class in classes) and \
                (limit is None or result.replayed < limit):
            pending.append(dl)
            done.add(dl.source_id)
            result.replayed += 1
            result.by_class[dl.error_class] += 1
            if result.dry_run:
                result.records.append(dl)
        else:
            result.left += 1
            contiguous = False
            if limit is not None and result.replayed >= limit:
                result.stopped_at_limit = True
                break
        if contiguous:
            cursor = dl.dlq_offset + 1
        if len(pending) >= batch:
            flush()
    flush()
