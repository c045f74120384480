"""The reopen forwarder (``nyc311 run reopen-forwarder``): reopen requests, to the agency.

Each SurveyAnswered with ``reopen_requested`` becomes one ``reopen_forwards`` row (keyed by survey,
written with the consumed offsets), then, once the request's agency is known from the
projection, one ReopenRequested on ``nyc311.reopen-requested``, keyed by agency so each agency
can consume its own in order. The event id is derived from the survey id, so even a crash
between producing and marking the row forwarded yields the same event again, which agencies'
consumers recognise as a duplicate: exactly one reopen request per survey.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Message

from consumers.loop import Item
from nyc311.kafka import EventProducer
from nyc311.metrics import Metrics
from nyc311.settings import Settings
from schemas.serde import Serde
from schemas.validate import validate

log = logging.getLogger(__name__)

GROUP_ID = "nyc311-reopen-forwarder"
BATCH = 500

_QUEUE = """
INSERT INTO reopen_forwards (survey_id, event_id, request_id, answered_at, feedback)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (survey_id) DO NOTHING
"""

_DUE = """
SELECT f.survey_id, f.request_id, f.feedback, r.agency, r.complaint_type
FROM reopen_forwards f JOIN requests r USING (request_id)
WHERE f.status = 'pending'
ORDER BY f.answered_at LIMIT %s
FOR UPDATE OF f SKIP LOCKED
"""


def reopen_event_id(survey_id: uuid.UUID | str) -> str:
    return str(uuid.uuid5(uuid.UUID(str(survey_id)), "reopen-requested"))


@dataclass
class ForwardStats:
    forwarded: int = 0


class ReopenForwarder:
    """Consume-loop handler (queue) plus :meth:`tick` (forward)."""

    def __init__(self, settings: Settings, producer: EventProducer | None = None,
                 serde: Serde | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.serde = serde or Serde()
        self.producer = producer or EventProducer(settings)
        self.topics: Sequence[str] = [settings.topic("nyc311.survey-answered")]
        self.stats = ForwardStats()
        self.metrics = metrics or Metrics("reopen-forwarder")

    def setup(self, conn: psycopg.Connection) -> None:
        pass

    def decode(self, msg: Message) -> dict[str, Any]:
        return validate("survey_answered", self.serde.decode("survey_answered", msg.value()))

    def write(self, conn: psycopg.Connection, items: list[Item]) -> None:
        rows = [(i.value["survey_id"], i.value["event_id"], i.value["request_id"],
                 i.value["occurred_at"], i.value["feedback"])
                for i in items if i.value["reopen_requested"]]
        if rows:
            with conn.cursor() as cur:
                cur.executemany(_QUEUE, rows)

    def tick(self, conn: psycopg.Connection) -> bool:
        """Forward what can be forwarded; True if a full batch went (more may be waiting)."""
        with conn.transaction():
            due = conn.execute(_DUE, (BATCH,)).fetchall()
            if not due:
                return False
            for survey_id, request_id, feedback, agency, complaint_type in due:
                self.producer.send("reopen_requested", {
                    "event_id": reopen_event_id(survey_id), "occurred_at": datetime.now(UTC),
                    "request_id": request_id, "survey_id": str(survey_id), "agency": agency,
                    "complaint_type": complaint_type, "feedback": feedback,
                })
            self.producer.flush()  # acknowledged by Kafka before the rows say so
            conn.execute(
                "UPDATE reopen_forwards SET status = 'forwarded', forwarded_at = now(), "
                "agency = r.agency, complaint_type = r.complaint_type FROM requests r "
                "WHERE r.request_id = reopen_forwards.request_id "
                "AND reopen_forwards.survey_id = ANY(%s)", ([row[0] for row in due],))
        self.stats.forwarded += len(due)
        self.metrics.reopen_forwarded(len(due))
        log.info("forwarded %d reopen request(s)", len(due))
        return len(due) == BATCH
