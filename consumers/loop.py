"""The one consume loop every consumer runs on: Kafka in, PostgreSQL transaction out.

Per batch: decode every record (failures go to ``<topic>.dlq``, acknowledged before anything is
committed), then write the rows and the consumed offsets in one PostgreSQL transaction, then
commit the same offsets to Kafka so that standard lag tools see the group. On assignment the
loop seeks to the offsets stored in PostgreSQL, the source of truth; Kafka's committed offsets
are informational. Transient database errors are retried with backoff for as long as they last,
with the partitions paused so the group membership stays alive, and the batch in hand is never
skipped. A batch that fails for a non-transient reason is split record by record (savepoints) so
only the records the database refuses are dead-lettered.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NamedTuple, Protocol

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTP
from confluent_kafka.admin import AdminClient, OffsetSpec

from consumers.dlq import dead_letter
from nyc311.metrics import Metrics
from nyc311.settings import Settings
from producers.producer import DeliveryError, EventProducer
from schemas.serde import DecodeError
from storage import offsets as offset_store
from storage.db import connect, is_transient

log = logging.getLogger(__name__)

TP = tuple[str, int]


TUNING: dict[str, Any] = {
    # small fetches and a bounded local queue keep memory flat with topic size (librdkafka
    # holds what it prefetched); throughput is the same, see benchmarks/README.md
    "fetch.max.bytes": 4 * 1024 * 1024,
    "max.partition.fetch.bytes": 1024 * 1024,
    "queued.max.messages.kbytes": 8192,
    # a member learns of a rebalance at its next heartbeat: with librdkafka's 3 s, a worker
    # joining the group waited up to 3 s for the others to give up partitions
    "heartbeat.interval.ms": 500,
}


class Abandoned(RuntimeError):
    """The loop was stopped before the batch in hand could be written; it will be read again."""


class Item(NamedTuple):
    """A decoded record and the Kafka message it came from (a tuple: one is made per record)."""

    msg: Message
    value: Any


class Handler(Protocol):
    """What a consumer plugs into the loop."""

    topics: Sequence[str]

    def setup(self, conn: psycopg.Connection) -> None:
        """Once per new database connection (temp tables, prepared statements)."""

    def decode(self, msg: Message) -> Any:
        """Bytes to a value ready to write; raise DecodeError for records to dead-letter."""

    def write(self, conn: psycopg.Connection, items: list[Item]) -> None:
        """Write ``items`` inside the caller's transaction; no commit here."""


@dataclass
class LoopStats:
    """Counters of one run, for its summary line (Prometheus gets them via nyc311.metrics)."""

    records: int = 0
    batches: int = 0
    dead_lettered: int = 0
    db_retries: int = 0
    last_commit: float = 0.0
    assigned: set[TP] = field(default_factory=set)


class Backoff:
    """Exponential backoff with a cap: 0.2 s, 0.4 s, … up to ``cap``."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first, self.cap, self.attempt = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * (2 ** self.attempt))
        self.attempt += 1
        return delay


class ConsumeLoop:
    def __init__(self, settings: Settings, group_id: str, handler: Handler,
                 consumer_config: dict[str, Any] | None = None,
                 dlq_producer: EventProducer | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.group_id = settings.group(group_id)
        self.handler = handler
        self.stats = LoopStats()
        # service label: the contract group name without its "nyc311-" (projector, dispatcher…)
        self.metrics = metrics or Metrics(group_id.removeprefix("nyc311-"))
        self._db_error: str | None = None  # the last database operation's transient error
        self._refused: list[Message] = []  # records the database refused in the batch in hand
        self.running = True
        self._consumer_config = {
            **TUNING,  # defaults: KAFKA_<NAME> in the environment overrides them
            **settings.kafka_config(),
            "group.id": self.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            **(consumer_config or {}),
        }
        self._consumer: Consumer | None = None
        self._conn: psycopg.Connection | None = None
        self._dlq = dlq_producer or EventProducer(settings)
        self._positions: dict[TP, int] = {}  # next offset to process, per assigned partition
        self._admin_client: AdminClient | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        """Finish the batch in hand, commit, close. Safe from a signal handler."""
        self.running = False

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: stopping after the current batch", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def is_ready(self) -> tuple[bool, str]:
        """Ready: consuming, partitions assigned, and the last database operation succeeded;
        else False and why. Cheap and safe from another thread (the metrics server's)."""
        if self._consumer is None:
            return False, "not consuming"
        if not self.running:
            return False, "stopping"
        assigned = len(self.stats.assigned)
        if not assigned:
            return False, "no partitions assigned"
        if self._db_error is not None:
            return False, f"database unavailable: {self._db_error}"
        return True, f"{assigned} partitions assigned"

    def run(self, until_caught_up: bool = False, max_seconds: float | None = None,
            on_batch: Callable[[ConsumeLoop], None] | None = None,
            on_tick: Callable[[psycopg.Connection], bool] | None = None) -> LoopStats:
        """Consume until stopped (or, with ``until_caught_up``, until no lag is left).

        ``on_tick`` runs after every poll, batch or not, for work a consumer does beside its
        input (sending due surveys, forwarding); it returns True while it has work due now, and
        ``until_caught_up`` also waits for that to be done.
        """
        deadline = time.monotonic() + max_seconds if max_seconds else None
        consumer = self._consumer = Consumer(self._consumer_config)
        consumer.subscribe(list(self.handler.topics), on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        self.metrics.consuming(self.handler.topics)
        try:
            while self.running:
                if deadline is not None and time.monotonic() > deadline:
                    log.warning("stopping: %.0f s limit reached", max_seconds)
                    break
                messages = consumer.consume(self.settings.batch_size, self.settings.batch_timeout)
                try:
                    if messages:
                        self._process(messages)
                        if on_batch is not None:
                            on_batch(self)
                    busy = bool(self._with_db_retry(on_tick)) if on_tick else False
                except Abandoned as exc:
                    log.warning("%s: uncommitted work will be done again on the next start", exc)
                    break
                if not messages and not busy and until_caught_up and self._caught_up():
                    log.info("caught up: no lag on %d partitions", len(self.stats.assigned))
                    break
        finally:
            self._close()
        return self.stats

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            self._commit_kafka(consumer, dict(self._positions), asynchronous=False)
            self._leave_group(consumer)
            consumer.close()
        try:
            self._dlq.flush(30)
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @staticmethod
    def _leave_group(consumer: Consumer, seconds: float = 10.0) -> None:
        """Unsubscribe and serve the revocation from ``poll`` before ``close``: a revocation
        served inside ``close`` can hang in ``unassign`` for good when another member joins or
        leaves at that moment (librdkafka issue 4884; seen with two workers caught up at once).
        Records polled here are not processed: their offsets are past the committed ones."""
        consumer.unsubscribe()
        deadline = time.monotonic() + seconds
        while consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.1)

    # -- rebalancing -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaTP]) -> None:
        wanted = [(tp.topic, tp.partition) for tp in partitions]
        stored = self._with_db_retry(lambda conn: offset_store.load(conn, self.group_id, wanted),
                                     in_callback=True)
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
            if tp.offset >= 0:
                self._positions[(tp.topic, tp.partition)] = tp.offset
        self.stats.assigned.update(wanted)
        log.info("assigned %d partitions of %s (%d resume from PostgreSQL, %d from the beginning)",
                 len(wanted), ", ".join(sorted({t for t, _ in wanted})), len(stored),
                 len(wanted) - len(stored))
        log.debug("assigned %s", {f"{t}[{p}]": stored.get((t, p), "beginning") for t, p in wanted})
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaTP]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        mine = {tp: o for tp, o in self._positions.items() if tp in revoked}
        self._commit_kafka(consumer, mine, asynchronous=False)
        self._forget(revoked)
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[KafkaTP]) -> None:
        self._forget({(tp.topic, tp.partition) for tp in partitions})
        consumer.unassign()

    def _forget(self, partitions: set[TP]) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)
        self.stats.assigned -= partitions
        log.info("revoked %d partitions", len(partitions))
        log.debug("revoked %s", sorted(f"{t}[{p}]" for t, p in partitions))

    # -- one batch -------------------------------------------------------------------------------

    def _process(self, messages: list[Message]) -> None:
        started = time.monotonic()
        items: list[Item] = []
        poison: list[tuple[Message, BaseException]] = []
        last: dict[tuple[Any, Any], int] = {}  # (topic, partition) -> last offset in the batch
        decode, append = self.handler.decode, items.append
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_kafka_error(err)
                continue
            last[(msg.topic(), msg.partition())] = msg.offset()  # type: ignore[assignment]
            try:
                append(Item(msg, decode(msg)))
            except DecodeError as exc:
                poison.append((msg, exc))
        if not last:
            return
        ends: dict[TP, int] = {(str(t), int(p)): int(o) + 1 for (t, p), o in last.items()}
        if poison:
            self._dead_letter(poison)
        self._write(items, ends)
        for tp, end in ends.items():
            self._positions[tp] = max(end, self._positions.get(tp, 0))
        if self._consumer is not None:
            self._commit_kafka(self._consumer, ends, asynchronous=True)
        self.stats.records += len(items)
        self.stats.batches += 1
        self.stats.last_commit = time.time()
        self.metrics.batch_committed(
            decoded=[str(item.msg.topic()) for item in items],
            invalid=[str(msg.topic()) for msg, _ in poison],
            refused=[str(msg.topic()) for msg in self._refused],
            seconds=time.monotonic() - started, at=self.stats.last_commit)

    def _on_kafka_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaException(err)
        log.warning("consumer error (librdkafka retries): %s", err)

    def _dead_letter(self, failures: list[tuple[Message, BaseException]]) -> None:
        for msg, exc in failures:
            key = msg.key()
            log.warning("dead-lettering %s[%s]@%s: %s", msg.topic(), msg.partition(),
                        msg.offset(), exc, extra={
                            "topic": msg.topic(), "partition": msg.partition(),
                            "offset": msg.offset(), "error_class": type(exc).__name__,
                            # every topic but reopen-requested is keyed by request id
                            "key": key.decode("utf-8", "replace") if key else None})
        backoff = Backoff()
        while True:
            try:
                dead_letter(self._dlq, failures, self.group_id)
                break
            except (DeliveryError, KafkaException) as exc:  # broker away: wait, never skip
                log.warning("DLQ produce failed, retrying: %s", exc)
                if not self.running:
                    raise Abandoned("stopped while the DLQ was unavailable") from exc
                self._wait(backoff.next())
        self.stats.dead_lettered += len(failures)
        self.metrics.dead_lettered([str(msg.topic()) for msg, _ in failures])

    def _write(self, items: list[Item], ends: dict[TP, int]) -> None:
        def transaction(conn: psycopg.Connection) -> None:
            self._refused = []
            try:
                with conn.transaction():
                    self.handler.write(conn, items)
                    offset_store.store(conn, self.group_id, ends)
            except psycopg.Error as exc:
                if is_transient(exc):
                    raise
                log.warning("batch refused (%s: %s); writing record by record",
                            type(exc).__name__, exc)
                self._write_one_by_one(conn, items, ends)

        self._with_db_retry(transaction)

    def _write_one_by_one(self, conn: psycopg.Connection, items: list[Item],
                          ends: dict[TP, int]) -> None:
        refused: list[tuple[Message, BaseException]] = []
        with conn.transaction():
            for item in items:
                try:
                    with conn.transaction():  # a savepoint per record
                        self.handler.write(conn, [item])
                except psycopg.Error as exc:
                    if is_transient(exc):
                        raise
                    refused.append((item.msg, exc))
            self._refused = [msg for msg, _ in refused]
            if refused:
                self._dead_letter(refused)
            offset_store.store(conn, self.group_id, ends)

    # -- database retries ------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # autocommit: every `conn.transaction()` block is then a real BEGIN … COMMIT,
            # never a savepoint inside a transaction some earlier read left open
            conn = connect(self.settings, autocommit=True)
            self.handler.setup(conn)
            self._conn = conn
        return self._conn

    def _with_db_retry(self, work: Callable[[psycopg.Connection], Any],
                       in_callback: bool = False) -> Any:
        """Run ``work`` on a live connection, retrying transient errors until they pass or the
        loop is told to stop (the batch is then abandoned uncommitted, to be read again)."""
        backoff = Backoff()
        while True:
            try:
                result = work(self._connection())
                self._db_error = None
                return result
            except (psycopg.Error, OSError) as exc:
                if not is_transient(exc):
                    raise
                self.stats.db_retries += 1
                self.metrics.db_retry()
                self._db_error = str(exc).strip()[:200] or type(exc).__name__
                log.warning("database unavailable (%s), retry %d", str(exc).strip()[:200],
                            backoff.attempt + 1)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if not self.running:
                    raise Abandoned("stopped while the database was unavailable") from exc
                if in_callback:  # no polling from inside a rebalance callback
                    time.sleep(backoff.next())
                else:
                    self._wait(backoff.next())

    def _wait(self, seconds: float) -> None:
        """Sleep without losing the group: pause, poll (serves heartbeats and rebalances),
        then resume and rewind to the last processed positions so nothing fetched is skipped."""
        consumer = self._consumer
        if consumer is None:
            time.sleep(seconds)
            return
        assignment = consumer.assignment()
        if assignment:
            consumer.pause(assignment)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = consumer.poll(min(0.5, max(0.0, end - time.monotonic())))
            err = msg.error() if msg is not None else None
            if err is not None:
                self._on_kafka_error(err)
        assignment = consumer.assignment()
        if assignment:
            consumer.resume(assignment)
            for tp in assignment:
                position = self._positions.get((tp.topic, tp.partition))
                if position is not None:
                    self._seek(consumer, KafkaTP(tp.topic, tp.partition, position))

    @staticmethod
    def _seek(consumer: Consumer, tp: KafkaTP) -> None:
        try:
            consumer.seek(tp)
        except KafkaException as exc:  # not yet fetching: the assign offset already applies
            log.debug("seek %s: %s", tp, exc)

    # -- Kafka offsets and lag -------------------------------------------------------------------

    def _commit_kafka(self, consumer: Consumer, positions: dict[TP, int],
                      asynchronous: bool) -> None:
        if not positions:
            return
        offsets = [KafkaTP(t, p, o) for (t, p), o in positions.items()]
        try:
            if asynchronous:
                consumer.commit(offsets=offsets, asynchronous=True)
            else:
                consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # informational copy only; PostgreSQL holds the truth
            log.info("Kafka offset commit skipped: %s", exc)

    def _caught_up(self) -> bool:
        """True when every assigned partition's position has reached its log end."""
        consumer = self._consumer
        if consumer is None:
            return False
        assignment = consumer.assignment()
        if not assignment:
            return False
        try:
            ends = log_end_offsets(self._admin(), [(tp.topic, tp.partition) for tp in assignment])
            # the consumer's own position also counts what it skips without handing it over
            # (transaction markers: a topic a transactional producer wrote ends with one)
            skipped = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(assignment)}
        except KafkaException as exc:  # leader moving, broker restarting: ask again later
            log.info("log-end offsets unavailable: %s", exc)
            return False
        return all(max(self._positions.get(tp, 0), skipped.get(tp, 0)) >= end
                   for tp, end in ends.items() if end > 0)

    def _admin(self) -> AdminClient:
        if self._admin_client is None:
            self._admin_client = AdminClient(self.settings.kafka_config())
        return self._admin_client


def log_end_offsets(admin: AdminClient, partitions: list[TP],
                    timeout: float = 10.0) -> dict[TP, int]:
    """The log-end offset (high watermark) of many partitions in one ListOffsets request."""
    if not partitions:
        return {}
    request = {KafkaTP(t, p): OffsetSpec.latest() for t, p in partitions}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
