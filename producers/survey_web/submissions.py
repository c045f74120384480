"""One answer per survey: claim the survey in PostgreSQL, produce SurveyAnswered, then commit.

The claim (``survey_submissions``) is inserted first and holds the survey's row lock, so a
second submission of the same survey waits and then finds it taken. SurveyAnswered is produced
and flushed (acknowledged by every in-sync replica) *before* the claim commits: if Kafka does not
take the event, the claim rolls back and the person can simply send the form again. The only
gap left is a commit that fails after the event landed; the person may then answer again, and
the projection keeps the earliest answer of each survey, so the published numbers do not move.

The producer is shared by every request, and :meth:`EventProducer.flush` reports the delivery
errors of everything in flight; a lock makes each submission's produce-and-flush its own, so one
person's failure is never reported to (or hidden from) another.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException

from nyc311.settings import Settings
from nyc311.tokens import SurveyClaim
from producers.producer import DeliveryError, EventProducer
from producers.survey_web.answers import Answer
from schemas.serde import Record
from storage.db import connect

log = logging.getLogger(__name__)

# A survey answer must not keep the person waiting two minutes: librdkafka gives up on the
# record after MESSAGE_TIMEOUT_MS, and flush waits a little longer, so when flush returns each
# record has either landed or failed, never still in flight.
MESSAGE_TIMEOUT_MS = 10_000
FLUSH_TIMEOUT_S = MESSAGE_TIMEOUT_MS / 1000 + 5
PRODUCER_OVERRIDES: dict[str, Any] = {"linger.ms": 0, "message.timeout.ms": MESSAGE_TIMEOUT_MS}


class NotRecorded(RuntimeError):
    """Kafka or PostgreSQL did not take the answer; nothing was recorded, it may be sent again."""


@dataclass(frozen=True)
class Recorded:
    """The outcome of a submission: the event produced, or ``None`` when already answered."""

    event: Record | None

    @property
    def already_answered(self) -> bool:
        return self.event is None


class AnswerRecorder:
    """Records answers; owns the producer unless one is given (then the giver owns it)."""

    def __init__(self, settings: Settings, producer: EventProducer | None = None) -> None:
        self.settings = settings
        self._owned = producer is None
        self._producer = producer
        self._lock = threading.Lock()

    def _get_producer(self) -> EventProducer:
        if self._producer is None:
            self._producer = EventProducer(self.settings, **PRODUCER_OVERRIDES)
        return self._producer

    def is_answered(self, survey_id: str) -> bool:
        with connect(self.settings) as conn:
            row = conn.execute("SELECT 1 FROM survey_submissions WHERE survey_id = %s",
                               (survey_id,)).fetchone()
        return row is not None

    def record(self, claim: SurveyClaim, language: str, answer: Answer) -> Recorded:
        """Claim the survey, produce SurveyAnswered, commit; raise :class:`NotRecorded`."""
        event: Record = {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime.now(UTC),
            "request_id": claim.request_id,
            "survey_id": claim.survey_id,
            "language": language,
            "satisfaction": answer.satisfaction,
            "reopen_requested": answer.reopen,
            "feedback": answer.feedback,
        }
        try:
            with connect(self.settings) as conn:  # commits on a normal exit, rolls back on error
                row = conn.execute(
                    "INSERT INTO survey_submissions (survey_id, event_id) VALUES (%s, %s) "
                    "ON CONFLICT (survey_id) DO NOTHING RETURNING event_id",
                    (claim.survey_id, event["event_id"]),
                ).fetchone()
                if row is None:
                    return Recorded(None)
                self._produce(event)
        except NotRecorded:
            raise
        except Exception as exc:
            log.warning("survey answer not recorded: %s", type(exc).__name__,
                        extra={"survey_id": claim.survey_id})
            raise NotRecorded(str(exc)) from exc
        log.info("survey answered", extra={"survey_id": claim.survey_id,
                                           "event_id": event["event_id"]})
        return Recorded(event)

    def _produce(self, event: Record) -> None:
        with self._lock:
            producer = self._get_producer()
            try:
                producer.send("survey_answered", event)
                producer.flush(FLUSH_TIMEOUT_S)
            except (DeliveryError, KafkaException, BufferError) as exc:
                log.warning("SurveyAnswered not delivered: %s", exc,
                            extra={"survey_id": event["survey_id"]})
                if self._owned and _is_fatal(exc):
                    self._producer = None  # a fatal producer never recovers; start a new one
                raise NotRecorded(str(exc)) from exc

    def close(self) -> None:
        """Flush what is in flight (there is nothing, between requests) if the producer is ours."""
        with self._lock:
            if self._owned and self._producer is not None:
                try:
                    self._producer.flush(FLUSH_TIMEOUT_S)
                except DeliveryError:
                    log.exception("flush at shutdown failed")
                self._producer = None


def _is_fatal(exc: Exception) -> bool:
    if isinstance(exc, KafkaException) and exc.args:
        error = exc.args[0]
        return bool(getattr(error, "fatal", lambda: False)())
    return False
