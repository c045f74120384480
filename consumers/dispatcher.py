"""The survey dispatcher (``nyc311 run dispatcher``): one survey for every closure with a contact.

Two steps, so that Kafka delivery semantics and the outside world stay apart:

1. **Queue** (the consume loop's handler): each RequestClosed becomes one ``survey_dispatch`` row,
   keyed by the closed event's id and written in the same transaction as the consumed offsets. A
   duplicated event or a replayed batch finds the row already there: one closure, one survey.
2. **Send** (every tick of the loop): due rows are leased (``FOR UPDATE SKIP LOCKED``, so several
   dispatchers can share the work), joined with the request and its contact from the
   projection, and sent in the person's language with a signed link. After a send succeeds,
   SurveySent is produced and acknowledged, then the row is marked sent.

A closure whose request has no contact is recorded as ``no_contact`` (counted, not an error), and
one older than ``NYC311_SURVEY_MAX_CLOSURE_AGE_DAYS`` as ``too_old`` (a backfill or a replay of
old closures surveys no one months later). A closure whose request has not been projected yet
waits up to ``NYC311_CONTACT_WAIT_HOURS``. Contacts are sealed in the projection and opened
here with their key from the vault (storage/vault.py); an erased contact is no contact.
Transient send failures are retried with backoff up to ``NYC311_SEND_ATTEMPTS`` times; a
permanent failure (or the last attempt) is recorded as ``failed`` with its error, visible in
the table and the counters. The one window left: a crash after the provider accepted a message
and before the row is marked sent (one UPDATE, right after the provider's answer) re-sends that
survey after the lease expires (the email keeps the same Message-ID, so mail systems can fold
the two). SurveySent is produced after the row is marked sent, for all of a tick's sends with one
flush; a sent row whose event Kafka has not acknowledged is emitted again on the next tick.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from confluent_kafka import Message
from psycopg import sql

from consumers.channels import (
    SMS,
    Channel,
    ChannelUnavailableError,
    OutgoingSurvey,
    PermanentSendError,
    SendError,
)
from consumers.loop import Item
from nyc311.kafka import EventProducer
from nyc311.metrics import Metrics
from nyc311.redact import redact_contact, redact_text, sensitive
from nyc311.settings import Settings
from schemas.serde import Serde
from schemas.validate import validate
from storage.vault import open_contact
from survey.i18n import resolve_language
from survey.i18n.messages import render_survey_message
from survey.links import make_token
from survey.short_links import sms_with_short_link

log = logging.getLogger(__name__)

GROUP_ID = "nyc311-dispatcher"
LEASE = "5 minutes"
BATCH = 200

_QUEUE = """
INSERT INTO survey_dispatch (closure_event_id, survey_id, request_id, closed_at, closure_status)
VALUES (%s, gen_random_uuid(), %s, %s, %s)
ON CONFLICT (closure_event_id) DO NOTHING
"""

_LEASE = f"""
UPDATE survey_dispatch d SET next_attempt_at = now() + interval '{LEASE}', updated_at = now()
WHERE d.closure_event_id IN (
    SELECT closure_event_id FROM survey_dispatch
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING d.closure_event_id, d.survey_id, d.request_id, d.closure_status, d.attempts,
          d.received_at, d.closed_at
"""

# The contact comes sealed from the projection and opens with its key from the vault; an erased
# contact (no key) is no contact.
_DETAILS = """
SELECT r.request_id, r.language, r.agency_name, c.key_id, c.sealed, k.key
FROM requests r LEFT JOIN contacts c USING (request_id)
LEFT JOIN {vault}.contact_keys k ON k.key_id = c.key_id
WHERE r.request_id = ANY(%s)
"""


@dataclass
class DispatchStats:
    sent: int = 0
    failed: int = 0
    no_contact: int = 0
    too_old: int = 0
    retried: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Outcome:
    kind: str  # sent | unavailable | transient | refused
    channel: str | None
    error: str | None


@dataclass(frozen=True)
class _Due:
    closure_event_id: uuid.UUID
    survey_id: uuid.UUID
    request_id: str
    closure_status: str
    attempts: int
    received_at: datetime
    closed_at: datetime


class Dispatcher:
    """Consume-loop handler (queue) plus :meth:`tick` (send)."""

    def __init__(self, settings: Settings, channels: Callable[[], Sequence[Channel]],
                 producer: EventProducer | None = None, serde: Serde | None = None,
                 metrics: Metrics | None = None) -> None:
        """``channels`` makes one set of channels; each sending thread calls it once."""
        self.settings = settings
        self.secret = settings.require_survey_secret()
        self._channel_factory = channels
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all_channels: list[Channel] = []
        self._pool = ThreadPoolExecutor(settings.send_concurrency,
                                        thread_name_prefix="survey-send")
        self.serde = serde or Serde()
        self.producer = producer or EventProducer(settings)
        self.topics: Sequence[str] = [settings.topic("nyc311.request-closed")]
        self.stats = DispatchStats()
        self.metrics = metrics or Metrics("dispatcher")
        self._details = sql.SQL(_DETAILS).format(vault=sql.Identifier(settings.vault_schema))

    # -- queue -----------------------------------------------------------------------------------

    def setup(self, conn: psycopg.Connection) -> None:
        pass

    def decode(self, msg: Message) -> dict[str, Any]:
        return validate("request_closed", self.serde.decode("request_closed", msg.value()))

    def write(self, conn: psycopg.Connection, items: list[Item]) -> None:
        with conn.cursor() as cur:
            cur.executemany(_QUEUE, [(i.value["event_id"], i.value["request_id"],
                                      i.value["occurred_at"], i.value["status"]) for i in items])

    # -- send ------------------------------------------------------------------------------------

    def tick(self, conn: psycopg.Connection) -> bool:
        """Send what is due; True if a full lease was taken (more may be due right now)."""
        self._emit_unconfirmed(conn)
        with conn.transaction():
            due = [_Due(*row) for row in conn.execute(_LEASE, (BATCH,)).fetchall()]
        if not due:
            return False
        details = {row[0]: (row[1], row[2], *open_contact(row[0], *row[3:])) for row in
                   conn.execute(self._details, ([d.request_id for d in due],)).fetchall()}
        planned: list[tuple[_Due, OutgoingSurvey]] = []
        for item in due:
            try:
                survey = self._plan(conn, item, details.get(item.request_id))
            except psycopg.Error:
                raise  # the loop retries the tick; the lease keeps the row from a double send
            except Exception as exc:  # a bug or bad data in one survey must not stop the others
                log.exception("survey for closure %s could not be prepared", item.closure_event_id)
                self._retry_or_fail(conn, item, f"{type(exc).__name__}: {exc}")
                continue
            if survey is not None:
                planned.append((item, survey))
        futures = {self._pool.submit(self._deliver, survey): (item, survey)
                   for item, survey in planned}
        for future in as_completed(futures):  # record each send as soon as it is known
            item, survey = futures[future]
            self._apply(conn, item, survey, future.result())
        self._emit_unconfirmed(conn)
        return len(due) == BATCH

    def _emit_unconfirmed(self, conn: psycopg.Connection) -> None:
        """Produce SurveySent for sent rows Kafka has not acknowledged yet: this tick's sends, or
        an earlier run's that crashed in between. One flush for all; the ids are deterministic,
        so a second emission is the same event."""
        rows = conn.execute(
            "SELECT closure_event_id, survey_id, request_id, channel, language, sent_at "
            "FROM survey_dispatch WHERE status = 'sent' AND NOT sent_event_emitted "
            "LIMIT 10000").fetchall()
        if not rows:
            return
        for closure_event_id, survey_id, request_id, channel, language, sent_at in rows:
            self.producer.send("survey_sent", {
                "event_id": str(uuid.uuid5(survey_id, "survey-sent")),
                "occurred_at": sent_at, "request_id": request_id, "survey_id": str(survey_id),
                "channel": channel, "language": language,
                "closure_event_id": str(closure_event_id),
            })
        self.producer.flush()
        with conn.transaction():
            conn.execute("UPDATE survey_dispatch SET sent_event_emitted = true "
                         "WHERE closure_event_id = ANY(%s)", ([r[0] for r in rows],))

    def _plan(self, conn: psycopg.Connection, due: _Due,
              details: tuple[Any, ...] | None) -> OutgoingSurvey | None:
        """Settle what needs no sending (too old, no request yet, no contact); else the survey
        to send."""
        age = datetime.now(UTC) - due.closed_at
        if age.total_seconds() > self.settings.survey_max_closure_age_days * 86400:
            self._finish(conn, due, "too_old", error=f"closed {age.days} days ago")
            return None
        if details is None:  # the request's created event has not been projected yet
            waited = (datetime.now(UTC) - due.received_at).total_seconds() / 3600
            if waited >= self.settings.contact_wait_hours:
                self._finish(conn, due, "no_contact", error="the request never arrived")
            else:
                self._reschedule(conn, due, "1 minute", attempts=due.attempts)
            return None
        language_tag, agency_name, email, phone = details
        survey = self._compose(due, resolve_language(language_tag), agency_name, email, phone)
        if not any(c.can_send(survey) for c in self._channels()):
            reason = "no contact given" if not (email or phone) else "no channel for this contact"
            self._finish(conn, due, "no_contact", error=reason)
            return None
        return self._with_short_sms_link(conn, due, survey)

    def _channels(self) -> list[Channel]:
        """This thread's channel instances (an SMTP connection is not shared between threads)."""
        channels: list[Channel] | None = getattr(self._local, "channels", None)
        if channels is None:
            channels = self._local.channels = list(self._channel_factory())
            with self._lock:
                self._all_channels.extend(channels)
        return channels

    def _deliver(self, survey: OutgoingSurvey) -> _Outcome:
        """Runs on a worker thread: try the usable channels in order of preference. Neither
        the outcome's error nor what is logged meanwhile holds the address or number."""
        with sensitive(survey.email, survey.phone):
            outcome = self._try_channels(survey)
        if outcome.error:
            outcome = _Outcome(outcome.kind, outcome.channel,
                               redact_contact(outcome.error, survey.email, survey.phone))
        return outcome

    def _try_channels(self, survey: OutgoingSurvey) -> _Outcome:
        refusals: list[str] = []
        last: str | None = None
        for channel in (c for c in self._channels() if c.can_send(survey)):
            last = channel.name
            try:
                channel.send(survey)
            except PermanentSendError as exc:  # e.g. email refused: fall back to the next channel
                refusals.append(f"{channel.name}: {exc}")
                continue
            except ChannelUnavailableError as exc:
                return _Outcome("unavailable", channel.name, f"{channel.name} unavailable: {exc}")
            except SendError as exc:
                return _Outcome("transient", channel.name, f"{channel.name}: {exc}")
            except Exception as exc:  # a bug or bad data in one survey must not stop the others
                log.exception("survey %s could not be sent", survey.survey_id)
                return _Outcome("transient", channel.name, f"{type(exc).__name__}: {exc}")
            return _Outcome("sent", channel.name, None)
        return _Outcome("refused", last, "; ".join(refusals))

    def _apply(self, conn: psycopg.Connection, due: _Due, survey: OutgoingSurvey,
               outcome: _Outcome) -> None:
        if outcome.kind == "sent":
            assert outcome.channel is not None
            self._sent(conn, due, outcome.channel, survey.language)
        elif outcome.kind == "unavailable":  # our side is broken, not this survey: no attempt used
            self._reschedule(conn, due, "60 seconds", attempts=due.attempts, error=outcome.error)
        elif outcome.kind == "transient":
            self._retry_or_fail(conn, due, outcome.error or "", outcome.channel)
        else:
            self._finish(conn, due, "failed", error=outcome.error or "", attempts=due.attempts + 1,
                         channel=outcome.channel)

    def _retry_or_fail(self, conn: psycopg.Connection, due: _Due, error: str,
                       channel: str | None = None) -> None:
        attempts = due.attempts + 1
        if attempts >= self.settings.send_attempts:
            self._finish(conn, due, "failed", error=error, attempts=attempts, channel=channel)
        else:
            self.stats.retried += 1
            delay = f"{min(3600, 30 * 2 ** (attempts - 1))} seconds"
            self._reschedule(conn, due, delay, attempts=attempts, error=error)

    def _sent(self, conn: psycopg.Connection, due: _Due, channel: str, language: str) -> None:
        """Record the send at once (a crash now must not send it twice); the event follows."""
        with conn.transaction():
            conn.execute(
                "UPDATE survey_dispatch SET status = 'sent', channel = %s, language = %s, "
                "sent_at = now(), attempts = attempts + 1, last_error = NULL, updated_at = now() "
                "WHERE closure_event_id = %s", (channel, language, due.closure_event_id))
        self.stats.sent += 1
        self.stats.by_channel[channel] = self.stats.by_channel.get(channel, 0) + 1
        self.metrics.survey_sent(channel)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for channel in self._all_channels:
            channel.close()

    def _compose(self, due: _Due, language: str, agency_name: str | None, email: str | None,
                 phone: str | None) -> OutgoingSurvey:
        token = make_token(self.secret, str(due.survey_id), due.request_id, language)
        link = f"{self.settings.survey_base_url}/survey/{token}"
        message = render_survey_message(language, link, due.request_id, agency_name,
                                        due.closure_status, self.settings.survey_token_days)
        return OutgoingSurvey(survey_id=str(due.survey_id), language=language, email=email,
                              phone=phone, subject=message.subject, text=message.text,
                              html=message.html, sms=message.sms)

    def _with_short_sms_link(self, conn: psycopg.Connection, due: _Due,
                             survey: OutgoingSurvey) -> OutgoingSurvey:
        """An SMS survey carries a short link (``survey_links``), so the text fits one SMS
        segment; the email keeps its signed link. Made only where an SMS channel can send it."""
        if not any(c.name == SMS and c.can_send(survey) for c in self._channels()):
            return survey
        sms = sms_with_short_link(conn, self.settings, str(due.survey_id), due.request_id,
                                  survey.language)
        return dataclasses.replace(survey, sms=sms)

    def _reschedule(self, conn: psycopg.Connection, due: _Due, delay: str, attempts: int,
                    error: str | None = None) -> None:
        error = redact_text(error) if error else error  # no address or number in last_error
        with conn.transaction():
            conn.execute(
                "UPDATE survey_dispatch SET next_attempt_at = now() + %s::interval, attempts = %s, "
                "last_error = coalesce(%s, last_error), updated_at = now() "
                "WHERE closure_event_id = %s", (delay, attempts, error, due.closure_event_id))

    def _finish(self, conn: psycopg.Connection, due: _Due, status: str, error: str,
                attempts: int | None = None, channel: str | None = None) -> None:
        """Settle a survey as ``failed`` (``channel``: the last one tried), ``no_contact`` or
        ``too_old``."""
        error = redact_text(error)  # no address or number in last_error or the log
        with conn.transaction():
            conn.execute(
                "UPDATE survey_dispatch SET status = %s, last_error = %s, attempts = %s, "
                "updated_at = now() WHERE closure_event_id = %s",
                (status, error, due.attempts if attempts is None else attempts,
                 due.closure_event_id))
        if status == "failed":
            self.stats.failed += 1
            self.metrics.survey_failed(channel)
            log.error("survey for closure %s failed: %s", due.closure_event_id, error,
                      extra={"request_id": due.request_id})
        elif status == "too_old":
            self.stats.too_old += 1
            self.metrics.survey_too_old()
        else:
            self.stats.no_contact += 1
            self.metrics.survey_no_contact()
