"""The one consume loop every consumer runs on: Kafka in, PostgreSQL transaction out.

Per batch: decode every record (failures go to ``<topic>.dlq``, acknowledged before anything is
committed), then write the rows and the consumed offsets in one PostgreSQL transaction, then
commit the same offsets to Kafka so that standard lag tools see the group. On assignment the
loop seeks to the offsets stored in PostgreSQL, the source of truth; Kafka's committed offsets
are informational. Transient database errors are retried with backoff for as long as they last,
with the partitions paused so the group membership stays alive, and the batch in hand is never
skipped. A batch that fails for a non-transient reason is split record by record (savepoints) so
only the records the database refuses are dead-lettered.

Groups rebalance cooperatively (``cooperative-sticky``, :data:`ASSIGNMENT_STRATEGY`): a member
joining or leaving moves only the partitions that change owner, and every other member keeps
consuming its own throughout. The callbacks therefore see deltas, not the whole assignment: an
assignment adds partitions (their stored offsets are read for those alone), a revocation
removes some (Kafka's copy of their offsets is committed first), a loss too (nothing is
committed: another member may own them already), and ``consumer.assignment()`` is the current
set. A partition is revoked only between batches, or
while the loop waits out a failure with the batch in hand; the records of a partition no longer
held are then left out of the batch, unwritten, for the new owner to read from the offsets
stored in PostgreSQL. Eager and cooperative members cannot share a group: every member of a
group must run this version (docs/RUNBOOK.md, "Upgrading to cooperative rebalancing").

Nothing stalls silently. A record the DLQ refuses for its size is dead-lettered as a truncated
copy (:mod:`consumers.dlq`), so no single record is retried forever. What cannot be cured by
the loop itself (the database or the DLQ unavailable, a DLQ that refuses even the truncated
copy) is retried with backoff and *reported*: from the first failure of the work in hand (or
once a batch has been in hand ``NYC311_STALL_SECONDS`` without a commit) the loop counts
itself stalled: ``nyc311_stalled_seconds`` rises, and past ``NYC311_STALL_SECONDS`` ``/healthz``
answers 503 with the reason and ``nyc311_ready`` drops to 0. A stop (signal, ``--max-seconds``)
is honoured during every wait: the work in hand is left uncommitted, to be read again on the
next start, and :attr:`LoopStats.abandoned` says what was left and why.

This module is longer than 500 lines on purpose: :class:`ConsumeLoop` is one state machine
(positions per partition, the batch in hand, Kafka commits in flight, the stall clock, the
connection) whose methods all read and change that state; cut across modules it would be
harder to follow, not easier. What has a seam of its own lives beside it: dead letters in
:mod:`consumers.dlq`, the stall clock in :mod:`consumers.stall`, log-end offsets and backoff in
:mod:`nyc311.kafka`, stored offsets in :mod:`storage.offsets`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTP
from confluent_kafka.admin import AdminClient

from consumers.dlq import (
    SIZE_ERRORS,
    TRUNCATED_VALUE_BYTES,
    DeadLetterInterrupted,
    DeadLetterWriter,
    Letter,
)
from consumers.stall import Abandoned, WorkClock
from nyc311.kafka import TP, Backoff, log_end_offsets
from nyc311.metrics import Metrics
from nyc311.settings import Settings
from nyc311.stop import StopFlag
from schemas.serde import DecodeError
from storage import offsets as offset_store
from storage.db import connect, is_transient

log = logging.getLogger(__name__)

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

# the rebalance protocol the callbacks are written for (incremental: they get deltas); not a
# tuning knob, so KAFKA_PARTITION_ASSIGNMENT_STRATEGY does not override it
ASSIGNMENT_STRATEGY = "cooperative-sticky"


# Exit status of a service stopped (signal, --max-seconds) with work it could not commit: a
# temporary failure (sysexits' EX_TEMPFAIL); nothing is lost, the work is read again on start.
EX_TEMPFAIL = 75
CLOSE_WAIT = 2.0  # seconds the final Kafka commit and the consumer's close may take
KAFKA_COMMIT_STUCK = 2.0  # a commit unanswered this long: the coordinator is unreachable


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
    abandoned: str = ""  # why the run stopped with uncommitted work ("" if it did not)


class ConsumeLoop:
    def __init__(self, settings: Settings, group_id: str, handler: Handler,
                 consumer_config: dict[str, Any] | None = None,
                 dlq_writer: DeadLetterWriter | None = None,
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
            "partition.assignment.strategy": ASSIGNMENT_STRATEGY,
        }
        self._consumer_config["on_commit"] = self._on_commit
        self._consumer: Consumer | None = None
        self._conn: psycopg.Connection | None = None
        self._dlq = dlq_writer or DeadLetterWriter(settings)
        self._positions: dict[TP, int] = {}  # next offset to process, per assigned partition
        self._admin_client: AdminClient | None = None
        self._deadline: float | None = None  # monotonic end of --max-seconds
        self._max_seconds: float | None = None
        self._stop_cause = "on request"
        self._closing = False
        # the work in hand (a batch; or database work that failed), read by is_ready() and
        # stalled_seconds() from other threads
        self._work = WorkClock(settings.stall_seconds)
        # Kafka's copy of the offsets: the commits in flight, since when, and whether the
        # positions moved since the last one was sent
        self._commits_in_flight = 0
        self._commit_sent_at = 0.0
        self._kafka_dirty = False
        self._brokers_down = False  # librdkafka said so, and nothing has come from Kafka since
        self._paused = False  # in _wait: the assignment is paused while the loop polls

    # -- lifecycle -------------------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        """Finish the batch in hand, commit, close. Safe from a signal handler."""
        self.running = False

    def install_signal_handlers(self) -> StopFlag:
        """SIGTERM and SIGINT stop the loop as :meth:`stop` does (see :class:`StopFlag`)."""
        flag = StopFlag("stopping after the current batch", logger=log)

        def on_stop() -> None:
            self._stop_cause = f"on {flag.signal_name}" if flag.signal_name else "on request"
            self.stop()

        return flag.on_stop(on_stop).install()

    def _should_stop(self) -> bool:
        """Stopped by :meth:`stop` (a signal) or past the ``max_seconds`` deadline."""
        if not self.running:
            return True
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._stop_cause = f"at the {self._max_seconds:g} s limit"
            return True
        return False

    def is_ready(self) -> tuple[bool, str]:
        """Ready: consuming, partitions assigned, not stalled, and the last database operation
        succeeded; else False and why. Cheap and safe from another thread (the metrics
        server's)."""
        if self._consumer is None:
            return False, "not consuming"
        if not self.running:
            return False, "stopping"
        stalled = self.stalled_seconds()
        if stalled > 0 and stalled >= self.settings.stall_seconds:
            return False, f"stalled for {stalled:.0f} s: {self.stall_reason()}"
        if self._db_error is not None:
            return False, f"database unavailable: {self._db_error}"
        assigned = len(self.stats.assigned)
        if not assigned:
            return False, "no partitions assigned"
        return True, f"{assigned} partitions assigned"

    def stalled_seconds(self) -> float:
        """Seconds the work in hand has waited without progress (see :class:`WorkClock`)."""
        return self._work.stalled_seconds()

    def stall_reason(self) -> str:
        return self._work.reason()

    def _abandon(self, reason: str) -> Abandoned:
        """The exception that stops the loop with the work in hand uncommitted."""
        return self._work.abandon(self._stop_cause, reason)

    def run(self, until_caught_up: bool = False, max_seconds: float | None = None,
            on_batch: Callable[[ConsumeLoop], None] | None = None,
            on_tick: Callable[[psycopg.Connection], bool] | None = None) -> LoopStats:
        """Consume until stopped (or, with ``until_caught_up``, until no lag is left).

        ``on_tick`` runs after every poll, batch or not, for work a consumer does beside its
        input (sending due surveys, forwarding); it returns True while it has work due now, and
        ``until_caught_up`` also waits for that to be done.

        A stop (signal, ``max_seconds``) is honoured within seconds even while the database or
        Kafka is unavailable; work left uncommitted then is named in ``stats.abandoned``.
        """
        self._max_seconds = max_seconds
        self._deadline = time.monotonic() + max_seconds if max_seconds else None
        consumer = self._consumer = Consumer(self._consumer_config)
        consumer.subscribe(list(self.handler.topics), on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        self.metrics.consuming(self.handler.topics)
        self.metrics.watch_stall(self.stalled_seconds)
        try:
            while True:
                if self._should_stop():
                    if self.running:
                        log.warning("stopping: %.0f s limit reached", max_seconds)
                    break
                try:
                    messages = consumer.consume(self.settings.batch_size,
                                                self.settings.batch_timeout)
                    if self.stats.abandoned:  # an assignment given up inside its callback
                        break
                    if messages:
                        self._process(messages)
                        if on_batch is not None:
                            on_batch(self)
                    self._sync_kafka(consumer)
                    busy = bool(self._with_db_retry(on_tick, "the tick")) if on_tick else False
                except Abandoned as exc:
                    self.stats.abandoned = str(exc)
                    log.warning("%s", exc)
                    break
                if not messages and not busy and until_caught_up and self._caught_up():
                    log.info("caught up: no lag on %d partitions", len(self.stats.assigned))
                    break
        finally:
            self._close()
        return self.stats

    def _close(self) -> None:
        """Commit Kafka's copy of the offsets, leave the group and close, each bounded, so a
        stop during a broker outage still ends within seconds (PostgreSQL holds the offsets that
        count; Kafka's copy is caught up on the next start)."""
        consumer = self._consumer
        self._closing = True
        self.running = False  # /healthz: "stopping"
        try:
            if consumer is not None:
                if not self._kafka_stuck() and not self._brokers_down:
                    self._commit_kafka(consumer, dict(self._positions))
                    self._await_commits(consumer, CLOSE_WAIT)
                self._leave_group(consumer)
                self._close_consumer(consumer, CLOSE_WAIT)
        finally:
            self._consumer = None
            self._work.end()
            dropped = self._dlq.close(0 if self.stats.abandoned else 5.0)
            if dropped:
                log.warning("%d dead letter(s) not acknowledged by Kafka were dropped; their "
                            "records were not committed and are dead-lettered again on the "
                            "next start", dropped)
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

    @staticmethod
    def _close_consumer(consumer: Consumer, seconds: float) -> None:
        """``close()``, waited for at most ``seconds``: librdkafka's close waits for any offset
        commit still in flight, which during a broker outage means until the session times out
        (45 s by default). Past that, the process goes on without it; the group drops the
        member when its session times out."""
        done = threading.Event()

        def close() -> None:
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.info("closing the consumer: %s", exc)
            finally:
                done.set()

        threading.Thread(target=close, name="consumer-close", daemon=True).start()
        if not done.wait(seconds):
            log.warning("the Kafka consumer did not close within %.0f s (broker unreachable?); "
                        "going on without it: the group drops this member when its session "
                        "times out", seconds)

    # -- rebalancing -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaTP]) -> None:
        """Partitions added to the assignment (only those: the others go on as they were).

        Their next offsets are read from PostgreSQL and handed to ``incremental_assign``, which
        must be called, even with an empty list (a rebalance that gave this member nothing
        new), for librdkafka to finish the rebalance. While the loop waits out a failure with
        its partitions paused, the new ones are paused too, so nothing is fetched past them."""
        wanted = [(tp.topic, tp.partition) for tp in partitions]
        if not partitions:
            consumer.incremental_assign(partitions)
            return
        if self._closing or self.stats.abandoned:  # leaving: take them, read nothing
            consumer.incremental_assign(partitions)
            consumer.pause(partitions)
            return
        try:
            stored = self._with_db_retry(
                lambda conn: offset_store.load(conn, self.group_id, wanted),
                f"reading the stored offsets of {len(wanted)} assigned partitions",
                in_callback=True,
                left=f"nothing was read from the {len(wanted)} assigned partitions; they are read "
                     f"from their stored offsets on the next start")
        except Abandoned as exc:  # stopping while the database is away: read nothing
            self.stats.abandoned = str(exc)
            log.warning("%s", exc)
            consumer.incremental_assign(partitions)
            consumer.pause(partitions)
            return
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
            if tp.offset >= 0:
                self._positions[(tp.topic, tp.partition)] = tp.offset
        self.stats.assigned.update(wanted)
        self._kafka_dirty = True  # Kafka's copy of the offsets follows PostgreSQL's from now
        log.info("assigned %d partitions of %s (%d resume from PostgreSQL, %d from the "
                 "beginning): %d partitions held", len(wanted),
                 ", ".join(sorted({t for t, _ in wanted})), len(stored),
                 len(wanted) - len(stored), len(self.stats.assigned))
        log.debug("assigned %s", {f"{t}[{p}]": stored.get((t, p), "beginning") for t, p in wanted})
        consumer.incremental_assign(partitions)
        if self._paused:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaTP]) -> None:
        """Partitions taken away (only those). Their rows and offsets are committed already:
        a revocation is served from ``consume`` between batches, or from the waits of a retry,
        after which :meth:`_write` leaves them out. What is left is Kafka's copy of their
        offsets, committed here so the next owner's lag starts right."""
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        mine = {tp: o for tp, o in self._positions.items() if tp in revoked}
        if not self._closing and not self._kafka_stuck():  # closing: committed already
            self._commit_kafka(consumer, mine)
        self._forget(revoked, "revoked")
        consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[KafkaTP]) -> None:
        """Partitions lost (the session timed out): another member may own them already, so
        nothing of theirs is committed, not even to Kafka."""
        self._forget({(tp.topic, tp.partition) for tp in partitions}, "lost")
        consumer.incremental_unassign(partitions)

    def _forget(self, partitions: set[TP], how: str) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)
        self.stats.assigned -= partitions
        log.info("%s %d partitions: %d partitions held", how, len(partitions),
                 len(self.stats.assigned))
        log.debug("%s %s", how, sorted(f"{t}[{p}]" for t, p in partitions))

    # -- one batch -------------------------------------------------------------------------------

    def _process(self, messages: list[Message]) -> None:
        started = time.monotonic()
        self._work.begin(f"a batch of {len(messages)} records",
                         f"the batch in hand ({len(messages)} records) is not committed; it is "
                         f"read again on the next start")
        items: list[Item] = []
        poison: list[tuple[Message, BaseException]] = []
        last: dict[tuple[Any, Any], int] = {}  # (topic, partition) -> last offset in the batch
        decode, append = self.handler.decode, items.append
        held = self.stats.assigned
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_kafka_error(err)
                continue
            if (msg.topic(), msg.partition()) not in held:
                # fetched before a revocation served in the same consume(): its new owner
                # reads it from the offsets stored in PostgreSQL
                continue
            last[(msg.topic(), msg.partition())] = msg.offset()  # type: ignore[assignment]
            try:
                append(Item(msg, decode(msg)))
            except DecodeError as exc:
                poison.append((msg, exc))
        if not last:
            self._work.end()
            return
        self._brokers_down = False  # records came: Kafka answers
        ends: dict[TP, int] = {(str(t), int(p)): int(o) + 1 for (t, p), o in last.items()}
        if poison:
            self._dead_letter(poison)
        written = self._write(items, ends)
        if len(written) < len(ends):  # partitions revoked while the batch waited: left out
            items = [item for item in items
                     if (item.msg.topic(), item.msg.partition()) in written]
        ends = written
        for tp, end in ends.items():
            self._positions[tp] = max(end, self._positions.get(tp, 0))
        self._kafka_dirty = True
        self._work.end()
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
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        log.warning("consumer error (librdkafka retries): %s", err)

    def _dead_letter(self, failures: list[tuple[Message, BaseException]]) -> None:
        """Produce ``failures`` to their DLQs and wait until Kafka has every one.

        Bounded per record: one the DLQ refuses for its size goes again at once as a truncated
        copy. What no retry of ours can cure (Kafka unavailable, the DLQ refusing even the
        truncated copy, a topic or permission missing) is retried with backoff, the full copy
        first each time, while the loop reports itself stalled; a stop abandons the batch."""
        for msg, exc in failures:
            key = msg.key()
            log.warning("dead-lettering %s[%s]@%s: %s", msg.topic(), msg.partition(),
                        msg.offset(), exc, extra={
                            "topic": msg.topic(), "partition": msg.partition(),
                            "offset": msg.offset(), "error_class": type(exc).__name__,
                            # every topic but reopen-requested is keyed by request id
                            "key": key.decode("utf-8", "replace") if key else None})
        pending = [Letter(msg, exc) for msg, exc in failures]
        backoff = Backoff()
        while pending:
            try:
                results = self._dlq.write(pending, self.group_id, self._should_stop)
            except DeadLetterInterrupted as exc:
                raise self._abandon("dead letters were waiting for Kafka") from exc
            again: list[Letter] = []  # refused for size: the truncated copy, now
            later: list[tuple[Letter, KafkaError]] = []  # to wait for
            for letter, err in zip(pending, results, strict=True):
                if err is None:
                    if letter.truncated:
                        self._log_truncated(letter.msg)
                elif err.code() in SIZE_ERRORS and not letter.truncated:
                    again.append(letter._replace(truncated=True))
                else:
                    later.append((letter._replace(truncated=False), err))
            if later:
                letter, err = later[0]
                msg = letter.msg
                if err.code() in SIZE_ERRORS:
                    self._work.trouble = (f"cannot dead-letter {msg.topic()}[{msg.partition()}]@"
                                     f"{msg.offset()}: its DLQ refuses even a truncated copy "
                                     f"({err.str()})")
                else:
                    self._work.trouble = f"the dead-letter queue is unavailable: {err.str()}"
                log.warning("%s; %d dead letter(s) waiting, retrying", self._work.trouble,
                            len(later))
                if self._should_stop():
                    raise self._abandon(f"dead-lettering failed ({self._work.trouble})")
                self._wait(backoff.next())
                if self._should_stop():
                    raise self._abandon(f"dead-lettering failed ({self._work.trouble})")
            pending = again + [letter for letter, _ in later]
        self._work.trouble = None
        self.stats.dead_lettered += len(failures)
        self.metrics.dead_lettered([str(msg.topic()) for msg, _ in failures])

    @staticmethod
    def _log_truncated(msg: Message) -> None:
        value = msg.value() or b""
        log.warning("%s[%s]@%s is too large for its DLQ: dead-lettered a truncated copy (the "
                    "first %d of %d bytes, sha256 %s, in the headers); the record itself stays "
                    "in %s", msg.topic(), msg.partition(), msg.offset(),
                    min(len(value), TRUNCATED_VALUE_BYTES), len(value),
                    hashlib.sha256(value).hexdigest(), msg.topic(),
                    extra={"topic": msg.topic(), "partition": msg.partition(),
                           "offset": msg.offset()})

    def _write(self, items: list[Item], ends: dict[TP, int]) -> dict[TP, int]:
        """Write the batch and its offsets in one transaction, retrying transient errors; the
        offsets written are returned. A partition revoked while a retry waited (the waits serve
        rebalances) is left out of the next attempt: its new owner reads its records from the
        offsets stored in PostgreSQL, which this batch never moved."""
        def transaction(conn: psycopg.Connection) -> dict[TP, int]:
            self._refused = []
            held = self.stats.assigned
            batch, offsets = items, ends
            if any(tp not in held for tp in ends):
                batch = [item for item in items
                         if (item.msg.topic(), item.msg.partition()) in held]
                offsets = {tp: end for tp, end in ends.items() if tp in held}
                log.info("leaving %d records of %d revoked partitions out of the batch",
                         len(items) - len(batch), len(ends) - len(offsets))
            try:
                with conn.transaction():
                    self.handler.write(conn, batch)
                    offset_store.store(conn, self.group_id, offsets)
            except psycopg.Error as exc:
                if is_transient(exc):
                    raise
                log.warning("batch refused (%s: %s); writing record by record",
                            type(exc).__name__, exc)
                self._write_one_by_one(conn, batch, offsets)
            return offsets

        return self._with_db_retry(transaction, "writing the batch")

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

    def _with_db_retry(self, work: Callable[[psycopg.Connection], Any], what: str = "",
                       in_callback: bool = False, left: str = "") -> Any:
        """Run ``work`` on a live connection, retrying transient errors until they pass or the
        loop is told to stop (the work is then abandoned uncommitted, to be read again).

        While it retries the loop counts as stalled (``what`` says on what, when no batch is in
        hand already)."""
        backoff = Backoff()
        began = False
        try:
            while True:
                try:
                    result = work(self._connection())
                    self._db_error = None
                    if not began:
                        self._work.trouble = None
                    return result
                except (psycopg.Error, OSError) as exc:
                    if not is_transient(exc):
                        raise
                    self.stats.db_retries += 1
                    self.metrics.db_retry()
                    text = " ".join(str(exc).split())[:200] or type(exc).__name__
                    self._db_error = text
                    began = began or self._work.begin(what or "database work", left)
                    self._work.trouble = f"database unavailable: {text}"
                    log.warning("database unavailable (%s), retry %d", text, backoff.attempt + 1)
                    if self._conn is not None:
                        self._conn.close()
                        self._conn = None
                    if self._should_stop():
                        raise self._abandon("the database was unavailable") from exc
                    if in_callback:  # no polling from inside a rebalance callback
                        self._sleep(backoff.next())
                    else:
                        self._wait(backoff.next())
                    if self._should_stop():
                        raise self._abandon("the database was unavailable") from exc
        finally:
            if began:
                self._work.end()

    def _sleep(self, seconds: float) -> None:
        """Sleep, but no longer than it takes to notice a stop."""
        end = time.monotonic() + seconds
        while not self._should_stop() and (left := end - time.monotonic()) > 0:
            time.sleep(min(0.2, left))

    def _wait(self, seconds: float) -> None:
        """Sleep without losing the group: pause, poll (serves heartbeats and rebalances),
        then resume and rewind to the last processed positions so nothing fetched is skipped.
        Ends early on a stop."""
        consumer = self._consumer
        if consumer is None:
            self._sleep(seconds)
            return
        assignment = consumer.assignment()
        if assignment:
            consumer.pause(assignment)
        self._paused = True  # partitions assigned meanwhile are paused too (_on_assign)
        end = time.monotonic() + seconds
        try:
            while not self._should_stop() and time.monotonic() < end:
                msg = consumer.poll(min(0.2, max(0.0, end - time.monotonic())))
                err = msg.error() if msg is not None else None
                if err is not None:
                    self._on_kafka_error(err)
        finally:
            self._paused = False
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

    def _commit_kafka(self, consumer: Consumer, positions: dict[TP, int]) -> None:
        """Commit ``positions`` to Kafka, asynchronously: an informational copy for lag tools
        (PostgreSQL holds the truth), which must never hold the loop up, as a synchronous commit
        does for a whole session timeout while the broker is away."""
        if not positions:
            return
        offsets = [KafkaTP(t, p, o) for (t, p), o in positions.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            log.info("Kafka offset commit skipped: %s", exc)
            return
        self._commits_in_flight += 1
        self._commit_sent_at = time.monotonic()

    def _on_commit(self, err: KafkaError | None, partitions: list[KafkaTP]) -> None:
        """librdkafka's answer to a commit (served from poll)."""
        self._commits_in_flight = max(0, self._commits_in_flight - 1)
        failed = [tp for tp in partitions or [] if tp.error is not None]
        if err is None:
            self._brokers_down = False
        if err is not None or failed:
            why = err if err is not None else failed[0].error
            log.info("Kafka offset commit failed (%s); PostgreSQL holds the offsets, the next "
                     "commit carries them", why)
            self._kafka_dirty = True

    def _kafka_stuck(self) -> bool:
        """A commit has been waiting for an answer too long: the coordinator is unreachable."""
        return (self._commits_in_flight > 0
                and time.monotonic() - self._commit_sent_at > KAFKA_COMMIT_STUCK)

    def _sync_kafka(self, consumer: Consumer) -> None:
        """Bring Kafka's copy of the offsets up to the positions: after each batch, and after
        an assignment (a partition's new owner copies what PostgreSQL holds). One commit at a
        time, so commits do not pile up while the broker is away."""
        if self._kafka_dirty and self._positions and self._commits_in_flight == 0:
            self._kafka_dirty = False
            self._commit_kafka(consumer, dict(self._positions))

    def _await_commits(self, consumer: Consumer, seconds: float) -> None:
        """Serve commit answers for up to ``seconds`` (closing: the last commit has gone)."""
        end = time.monotonic() + seconds
        while self._commits_in_flight > 0 and time.monotonic() < end:
            consumer.poll(0.1)

    def _caught_up(self) -> bool:
        """True when every assigned partition's position has reached its log end."""
        consumer = self._consumer
        if consumer is None:
            return False
        assignment = consumer.assignment()
        if not assignment:
            return False
        timeout = 5.0
        if self._deadline is not None:  # the limit is honoured while the broker is away too
            timeout = max(1.0, min(timeout, self._deadline - time.monotonic()))
        try:
            ends = log_end_offsets(self._admin(), [(tp.topic, tp.partition) for tp in assignment],
                                   timeout)
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
