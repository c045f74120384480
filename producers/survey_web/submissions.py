"""One answer per survey, stored in one short transaction and never lost to a Kafka outage.

An answer is two rows written together: the claim (``survey_submissions``, keyed by survey) and
the SurveyAnswered event in the outbox (``survey_answer_outbox``: Avro bytes, key, event id). The
transaction commits in milliseconds and never waits on Kafka; the relay (``outbox``) produces
the event afterwards. So an answer given while the broker is away is accepted ("thank you") and
reaches the topic when it is back.

One answer per survey holds at the moment of the second click, before the projection has caught
up: the claim's primary key decides. Two submissions of one survey at once both try to insert
it; the second waits for the first's transaction (milliseconds) and then finds the survey
taken. Submissions of different surveys never wait for each other: there is no lock of ours.

The event id is derived from the survey id (:func:`~producers.survey_web.outbox.answered_event_id`),
so however often the relay has to produce it, it is the same event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from nyc311.settings import Settings
from producers.survey_web.answers import Answer
from producers.survey_web.outbox import answered_event_id
from schemas.serde import EVENT_TYPES, Record, Serde
from schemas.validate import validate
from storage.db import connect
from survey.links import SurveyClaim
from survey.short_links import FoundLink, find_link

log = logging.getLogger(__name__)

EVENT = "survey_answered"

_CLAIM = """
INSERT INTO survey_submissions (survey_id, event_id) VALUES (%s, %s)
ON CONFLICT (survey_id) DO NOTHING RETURNING event_id
"""

_STORE = """
INSERT INTO survey_answer_outbox (survey_id, event_id, request_id, event, key, value)
VALUES (%s, %s, %s, %s, %s, %s)
"""


class NotRecorded(RuntimeError):
    """PostgreSQL did not take the answer; nothing was recorded, it may be sent again."""


@dataclass(frozen=True)
class Recorded:
    """The outcome of a submission: the event stored, or ``None`` when already answered."""

    event: Record | None

    @property
    def already_answered(self) -> bool:
        return self.event is None


class AnswerRecorder:
    """Stores answers (claim + outbox row); ``on_stored`` is called after each commit."""

    def __init__(self, settings: Settings, on_stored: Callable[[], None] | None = None,
                 serde: Serde | None = None) -> None:
        self.settings = settings
        self.serde = serde or Serde()
        self._on_stored = on_stored or (lambda: None)

    def is_answered(self, survey_id: str) -> bool:
        with connect(self.settings, autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM survey_submissions WHERE survey_id = %s",
                               (survey_id,)).fetchone()
        return row is not None

    def find_link(self, link_id: str) -> FoundLink | None:
        """The survey a short link names (``None``: no such link)."""
        with connect(self.settings, autocommit=True) as conn:
            return find_link(conn, link_id)

    def record(self, claim: SurveyClaim, language: str, answer: Answer) -> Recorded:
        """Claim the survey and store its SurveyAnswered in the outbox, in one transaction;
        raise :class:`NotRecorded` if PostgreSQL does not take them."""
        event: Record = {
            "event_id": answered_event_id(claim.survey_id),
            "occurred_at": datetime.now(UTC),
            "request_id": claim.request_id,
            "survey_id": claim.survey_id,
            "language": language,
            "satisfaction": answer.satisfaction,
            "reopen_requested": answer.reopen_requested,
            "feedback": answer.feedback,
            "dissatisfaction_reason": answer.reason,
        }
        validate(EVENT, event)  # what the consumers will check, before it is stored
        value = self.serde.encode(EVENT, event)
        key = str(event[EVENT_TYPES[EVENT].key_field]).encode()
        try:
            with connect(self.settings) as conn:  # commits on a normal exit, rolls back on error
                if conn.execute(_CLAIM, (claim.survey_id, event["event_id"])).fetchone() is None:
                    return Recorded(None)
                conn.execute(_STORE, (claim.survey_id, event["event_id"], claim.request_id,
                                      EVENT, key, value))
        except Exception as exc:
            log.warning("survey answer not recorded: %s", type(exc).__name__,
                        extra={"survey_id": claim.survey_id})
            raise NotRecorded(str(exc)) from exc
        log.info("survey answered", extra={"survey_id": claim.survey_id,
                                           "event_id": event["event_id"]})
        self._on_stored()
        return Recorded(event)
