"""The survey page's outbox: answers wait in PostgreSQL until Kafka has acknowledged them.

A person's answer is stored with its claim in one short transaction (``submissions``): the
SurveyAnswered event exactly as it goes to Kafka (Avro bytes, key, deterministic event id) in
``survey_answer_outbox``. Nothing in that request waits on Kafka, so an answer given while the
broker is away is accepted all the same. The :class:`OutboxRelay`, a thread inside the survey
page's process, produces the stored events and marks each row sent once Kafka has acknowledged
it:

1. **Lease** a batch of due rows in a short transaction (``FOR UPDATE SKIP LOCKED``, moving
   ``next_attempt_at`` forward by :data:`LEASE_SECONDS`), so several survey-page processes can
   relay side by side without producing a row twice. No transaction stays open while it waits
   on Kafka.
2. **Produce** them with the idempotent producer and wait for each delivery report; librdkafka
   gives up on a record after :data:`RELAY_MESSAGE_TIMEOUT_MS`, which the lease outlasts.
3. **Mark** the acknowledged rows sent; the others get ``last_error`` and a next attempt after a
   backoff (1 s doubling to :data:`MAX_BACKOFF_SECONDS`), for as long as Kafka stays away.

The event id is derived from the survey id and the bytes are stored, so a row produced again
(a crash between Kafka's acknowledgement and the UPDATE, or a lease that ran out) is the same
event; the projection and the reopen forwarder keep one answer per survey.

Rows sent more than :data:`SENT_RETENTION_DAYS` ago are deleted (hourly). The relay wakes when
an answer is stored, and otherwise every :data:`IDLE_SECONDS`. On shutdown
it relays what is due for up to :data:`DRAIN_SECONDS`; rows still unsent stay in the table for
the next start (or another process) to send. :func:`outbox_health` is ``/healthz``: not ready
when the oldest unsent answer is older than ``NYC311_SURVEY_OUTBOX_MAX_AGE``, with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from nyc311.kafka import EventProducer
from nyc311.metrics import Metrics
from nyc311.settings import Settings
from schemas.serde import EVENT_TYPES
from storage.db import connect

log = logging.getLogger(__name__)

RELAY_MESSAGE_TIMEOUT_MS = 30_000
RELAY_OVERRIDES: dict[str, Any] = {"linger.ms": 5, "message.timeout.ms": RELAY_MESSAGE_TIMEOUT_MS}
LEASE_SECONDS = 90  # longer than a record can stay in flight (RELAY_MESSAGE_TIMEOUT_MS)
BATCH = 500
IDLE_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 15.0
DRAIN_SECONDS = 10.0
HEALTH_STATEMENT_TIMEOUT = "5s"
# Sent rows are kept this long (when did this answer reach Kafka?), then deleted: the event is on
# the topic and in the projection, and the answer's comments need not be kept a third time.
SENT_RETENTION_DAYS = 7
PRUNE_EVERY_SECONDS = 3600.0

_LEASE = """
UPDATE survey_answer_outbox o
SET next_attempt_at = now() + make_interval(secs => %s), attempts = o.attempts + 1
WHERE o.survey_id IN (
    SELECT survey_id FROM survey_answer_outbox
    WHERE sent_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING o.survey_id, o.event, o.key, o.value, o.attempts, o.created_at
"""

_SENT = """
UPDATE survey_answer_outbox SET sent_at = now(), last_error = NULL
WHERE survey_id = ANY(%s) AND sent_at IS NULL
"""

_FAILED = """
UPDATE survey_answer_outbox
SET next_attempt_at = now() + make_interval(secs => %s), last_error = %s
WHERE survey_id = %s AND sent_at IS NULL
"""

_PRUNE = """
DELETE FROM survey_answer_outbox
WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(days => %s)
"""

_STATUS = """
SELECT count(*), extract(epoch FROM min(created_at))::float8,
       extract(epoch FROM now() - min(created_at))::float8
FROM survey_answer_outbox WHERE sent_at IS NULL
"""


def answered_event_id(survey_id: str | uuid.UUID) -> str:
    """The SurveyAnswered event id of a survey: one answer a survey, so one id, whoever sends it."""
    return str(uuid.uuid5(uuid.UUID(str(survey_id)), "survey-answered"))


def backoff_seconds(attempts: int) -> float:
    return min(MAX_BACKOFF_SECONDS, float(2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class OutboxStatus:
    """The answers not yet acknowledged by Kafka: how many, since when (Unix time), how old."""

    unsent: int
    oldest_at: float | None
    oldest_age: float


def outbox_status(conn: psycopg.Connection) -> OutboxStatus:
    row = conn.execute(_STATUS).fetchone()
    assert row is not None
    unsent, oldest_at, oldest_age = row
    return OutboxStatus(int(unsent), oldest_at, max(0.0, oldest_age or 0.0))


def read_outbox_status(settings: Settings) -> OutboxStatus:
    """The outbox's status on a connection of its own (health checks, metrics)."""
    with connect(settings, autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = '{HEALTH_STATEMENT_TIMEOUT}'")
        return outbox_status(conn)


class OutboxGauge:
    """The outbox status the metrics export: read at scrape time, at most once a second, and
    the last one read kept while PostgreSQL does not answer (``nyc311_ready`` then says so)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._read_at = -1.0
        self._status: tuple[int, float | None] = (0, None)

    def __call__(self) -> tuple[int, float | None]:
        with self._lock:
            if self._read_at < 0 or time.monotonic() - self._read_at >= 1.0:
                self._read_at = time.monotonic()
                try:
                    status = read_outbox_status(self.settings)
                    self._status = (status.unsent, status.oldest_at)
                except Exception as exc:
                    log.debug("outbox gauge: %s", type(exc).__name__)
            return self._status


def outbox_health(settings: Settings, relay: OutboxRelay | None) -> tuple[bool, str]:
    """Ready when PostgreSQL answers, the relay runs, and no answer has waited for Kafka longer
    than ``NYC311_SURVEY_OUTBOX_MAX_AGE``; the reason says which, with the backlog."""
    try:
        status = read_outbox_status(settings)
    except Exception as exc:
        return False, f"database unavailable: {type(exc).__name__}"
    if relay is not None and not relay.running:
        return False, "the outbox relay is not running"
    if status.unsent == 0:
        return True, "outbox empty"
    waiting = (f"{status.unsent} answer{'s' if status.unsent != 1 else ''} waiting for Kafka, "
               f"the oldest for {status.oldest_age:.0f} s")
    limit = settings.survey_outbox_max_age
    if status.oldest_age > limit:
        error = relay.last_error if relay is not None else None
        return False, (f"{waiting}, longer than NYC311_SURVEY_OUTBOX_MAX_AGE ({limit:g} s)"
                       + (f"; last error: {error}" if error else ""))
    return True, waiting


@dataclass(frozen=True)
class _Row:
    survey_id: uuid.UUID
    event: str
    key: bytes
    value: bytes
    attempts: int
    created_at: Any


class OutboxRelay:
    """Produces the outbox's unsent answers to Kafka from a thread of its own.

    Without ``producer`` it makes its own (and a new one after a fatal producer error); with
    one, the giver owns it.
    """

    def __init__(self, settings: Settings, metrics: Metrics,
                 producer: EventProducer | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self._given = producer
        self._producer: Producer | None = None
        self._conn: psycopg.Connection | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None
        self._fatal = False
        self._pruned_at: float | None = None
        self.last_error: str | None = None  # Kafka's, for the last answers it did not take
        self.relayed = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="survey-outbox-relay",
                                        daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() \
            and not self._stopping.is_set()

    def notify(self) -> None:
        """An answer was stored: relay it now rather than at the next idle tick."""
        self._wake.set()

    def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Relay what is due for up to ``drain_seconds``, then stop; unsent rows stay stored."""
        self._drain_until = time.monotonic() + drain_seconds
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(drain_seconds + 5)
        self._close_connection()
        self._producer = None

    # -- the loop --------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while True:
            stopping = self._stopping.is_set()
            try:
                more = self.relay_once()
                failures = 0
            except Exception as exc:  # the database went away: reconnect, back off, go on
                failures += 1
                more = False
                log.warning("outbox relay: %s; trying again", type(exc).__name__)
                self._close_connection()
            if stopping:
                if not more or time.monotonic() >= self._drain_until:
                    return
                continue
            if more:
                continue
            self._wake.wait(IDLE_SECONDS if failures == 0 else backoff_seconds(failures))
            self._wake.clear()

    def relay_once(self) -> bool:
        """One pass: lease due rows, produce them, record the outcomes (and, hourly, delete
        old sent rows). True when a full batch was leased (more may be due right now)."""
        conn = self._connection()
        with conn.transaction():
            rows = [_Row(*r) for r in conn.execute(_LEASE, (LEASE_SECONDS, BATCH)).fetchall()]
        if rows:
            rows.sort(key=lambda r: r.created_at)
            outcomes = self._produce(rows)
            sent = [sid for sid, error in outcomes.items() if error is None]
            failed = {sid: error for sid, error in outcomes.items() if error is not None}
            attempts = {r.survey_id: r.attempts for r in rows}
            with conn.transaction():
                if sent:
                    conn.execute(_SENT, (sent,))
                if failed:
                    with conn.cursor() as cur:
                        cur.executemany(_FAILED, [(backoff_seconds(attempts[sid]), error, sid)
                                                  for sid, error in failed.items()])
            self.relayed += len(sent)
            self.metrics.outbox_relayed(len(sent), len(failed))
            if failed:
                self.last_error = next(iter(failed.values()))
                log.warning("outbox relay: %d of %d answers not acknowledged by Kafka (%s); "
                            "trying again", len(failed), len(rows), self.last_error)
            elif sent:
                self.last_error = None
            if self._fatal and self._given is None:
                self._producer, self._fatal = None, False  # a fatal producer never recovers
        if self._pruned_at is None or time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:
            self.prune(conn)
        return len(rows) == BATCH

    def prune(self, conn: psycopg.Connection) -> int:
        """Delete rows sent more than :data:`SENT_RETENTION_DAYS` ago; how many. A refusal (a
        role without DELETE) is logged and does not stop the relay."""
        self._pruned_at = time.monotonic()
        try:
            deleted = conn.execute(_PRUNE, (SENT_RETENTION_DAYS,)).rowcount
        except psycopg.errors.InsufficientPrivilege as exc:
            log.warning("outbox relay: sent answers not deleted: %s", exc)
            return 0
        if deleted:
            log.info("outbox relay: %d answers sent more than %d days ago deleted", deleted,
                     SENT_RETENTION_DAYS)
        return deleted

    # -- Kafka -----------------------------------------------------------------------------------

    def _get_producer(self) -> Producer:
        if self._given is not None:
            return self._given.producer
        if self._producer is None:
            self._producer = EventProducer(self.settings, **RELAY_OVERRIDES).producer
        return self._producer

    def _produce(self, rows: list[_Row]) -> dict[uuid.UUID, str | None]:
        """Produce each row; its survey id maps to ``None`` once acknowledged, or to the error.
        A row still in flight when a shutdown's drain time is up has no entry (its lease holds
        it until it runs out)."""
        producer = self._get_producer()
        outcomes: dict[uuid.UUID, str | None] = {}

        def reporter(survey_id: uuid.UUID) -> Callable[[KafkaError | None, Message], None]:
            def on_delivery(err: KafkaError | None, msg: Message) -> None:
                if err is not None and err.fatal():
                    self._fatal = True
                outcomes[survey_id] = None if err is None else str(err.str())
            return on_delivery

        for row in rows:
            topic = self.settings.topic(EVENT_TYPES[row.event].topic)
            while True:
                try:
                    producer.produce(topic, key=bytes(row.key), value=bytes(row.value),
                                     on_delivery=reporter(row.survey_id))
                    break
                except BufferError:
                    producer.poll(0.1)
                except KafkaException as exc:
                    error = exc.args[0] if exc.args else None
                    if isinstance(error, KafkaError) and error.fatal():
                        self._fatal = True
                    outcomes[row.survey_id] = str(exc)
                    break
        while len(outcomes) < len(rows):
            producer.poll(0.2)
            if self._stopping.is_set() and time.monotonic() >= self._drain_until:
                break
        return outcomes

    # -- PostgreSQL ------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, autocommit=True)
        return self._conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.close()
