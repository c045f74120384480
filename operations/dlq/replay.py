"""``nyc311 dlq replay``: dead letters back to their source topic, once each.

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
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka import TopicPartition as KafkaTP
from confluent_kafka.admin import AdminClient, NewTopic

from nyc311.kafka import PRODUCER_DEFAULTS
from nyc311.settings import Settings
from nyc311.topics import dlq_topic
from operations.dlq.letters import (
    HEADER_REPLAY_OF,
    DeadLetter,
    DlqError,
    dash,
    dlq_partitions,
    dlq_reader,
    header_text,
    parse,
    read_partition,
    source_topic,
)

log = logging.getLogger(__name__)

REPLAY_GROUP = "nyc311-dlq-replay"
LEDGER_TOPIC = "nyc311.dlq-replays"
BATCH = 500  # records per replay transaction

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
                f"[{dash(dl.source_partition)}]@{dash(dl.source_offset)} (docs/RUNBOOK.md, "
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
    consumer = dlq_reader(settings)
    done: set[str] = set()
    try:
        topic = ledger_topic(settings)
        for partition in dlq_partitions(consumer, topic) or []:
            for msg in read_partition(consumer, topic, partition, OFFSET_BEGINNING):
                key = header_text(msg.key())
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
    cursor_reader = dlq_reader(settings, group=settings.group(REPLAY_GROUP))
    txn: _Transactions | None = None
    try:
        partitions = dlq_partitions(cursor_reader, dlq)
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

    for msg in read_partition(reader, dlq, partition, cursor):
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
