"""The survey dispatcher against real Kafka, PostgreSQL, an SMTP server and an SNS server."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from consumers.channels import channels_from_settings
from consumers.dispatcher import GROUP_ID, Dispatcher
from consumers.loop import ConsumeLoop
from nyc311.kafka import EventProducer
from survey.links import read_token
from tests.consumers.test_projector import read_all
from tests.helpers import produce, project
from tests.servers import received

pytestmark = pytest.mark.integration

SECRET = "test-secret-0123456789abcdef"
T0 = datetime(2026, 10, 5, 14, 0, tzinfo=UTC)
LINK = re.compile(r"https?://\S+/survey/[A-Za-z0-9_.\-]+")
SHORT_LINK = re.compile(r"https?://\S+/s/[A-Za-z0-9]{12}$")  # SMS: survey/short_links.py


def created(request_id: str, email: str | None = None, phone: str | None = None,
            language: str | None = "en") -> tuple[str, dict]:
    contact = {"email": email, "phone": phone} if (email or phone) else None
    return ("request_created", {
        "event_id": str(uuid.uuid4()), "occurred_at": T0, "request_id": request_id,
        "agency": "HPD", "agency_name": "Department of Housing Preservation and Development",
        "complaint_type": "HEAT/HOT WATER", "descriptor": "ENTIRE BUILDING", "channel": "ONLINE",
        "borough": "BRONX", "incident_zip": "10458", "language": language, "contact": contact,
    })


def closed(request_id: str) -> tuple[str, dict]:
    return ("request_closed", {
        "event_id": str(uuid.uuid4()), "occurred_at": T0 + timedelta(days=2),
        "request_id": request_id, "status": "RESOLVED",
        "resolution_description": "Heat was restored.",
    })


def dispatch(settings) -> Dispatcher:
    dispatcher = Dispatcher(settings, lambda: channels_from_settings(settings))
    try:
        ConsumeLoop(settings, GROUP_ID, dispatcher).run(
            until_caught_up=True, max_seconds=60, on_tick=dispatcher.tick)
    finally:
        dispatcher.close()
    return dispatcher


def statuses(db) -> dict[str, tuple]:
    rows = db.execute("SELECT request_id, status, channel, language, attempts, last_error "
                      "FROM survey_dispatch").fetchall()
    return {r[0]: r[1:] for r in rows}


@pytest.fixture
def mail_settings(settings, topics, plain_smtp):
    server = plain_smtp()
    return replace(settings, survey_secret=SECRET, smtp_host="127.0.0.1", smtp_port=server.port,
                   smtp_starttls=False, sms_provider="none",
                   survey_base_url="https://survey.example"), server


def test_one_survey_per_closure_in_the_persons_language(mail_settings, db):
    settings, server = mail_settings
    duplicated = closed("1001")
    events = [created("1001", email="ana@example.com", language="es-US"), duplicated,
              duplicated, created("1002", phone="+12125550100"), closed("1002"),
              created("1003"), closed("1003")]
    produce(settings, events)
    project(settings)

    stats = dispatch(settings).stats
    assert (stats.sent, stats.no_contact, stats.failed) == (1, 2, 0)
    mail = received(server.maildir)
    assert len(mail) == 1
    assert mail[0]["To"] == "ana@example.com"
    assert mail[0]["Content-Language"] == "es"
    body = mail[0].get_body(("plain",)).get_content()
    link = LINK.search(body).group(0)
    assert link.startswith("https://survey.example/survey/")
    claim = read_token(SECRET, link.rsplit("/", 1)[1], 3600)
    assert claim.request_id == "1001" and claim.language == "es"

    rows = statuses(db)
    assert rows["1001"][:3] == ("sent", "EMAIL", "es")
    assert rows["1002"][0] == "no_contact" and "no channel" in rows["1002"][4]
    assert rows["1003"] == ("no_contact", None, None, 0, "no contact given")
    survey_id = db.execute("SELECT survey_id::text FROM survey_dispatch "
                           "WHERE request_id = '1001'").fetchone()[0]
    assert claim.survey_id == survey_id

    sent = read_all(settings, settings.topic("nyc311.survey-sent"), expected=1)
    record = EventProducer(settings).serde.decode("survey_sent", sent[0].value())
    assert (str(record["survey_id"]), record["channel"], record["language"],
            record["closure_event_id"]) == (survey_id, "EMAIL", "es", duplicated[1]["event_id"])

    # a restart (the group resumes from PostgreSQL) and the duplicates send nothing more
    produce(settings, [duplicated])
    assert dispatch(settings).stats.sent == 0
    assert len(received(server.maildir)) == 1


def test_a_closure_waits_for_its_request_and_then_is_sent(mail_settings, db):
    settings, server = mail_settings
    produce(settings, [closed("2001")])
    dispatch(settings)
    assert statuses(db)["2001"][0] == "pending"  # its created event has not arrived
    assert received(server.maildir) == []

    produce(settings, [created("2001", email="li@example.com", language="zh-Hant")])
    project(settings)
    db.execute("UPDATE survey_dispatch SET next_attempt_at = now()")
    assert dispatch(settings).stats.sent == 1
    assert received(server.maildir)[0]["Content-Language"] == "zh"


def test_a_request_that_never_arrives_is_counted_after_the_wait(mail_settings, db):
    settings, _ = mail_settings
    produce(settings, [closed("2501")])
    stats = dispatch(replace(settings, contact_wait_hours=0)).stats
    assert stats.no_contact == 1
    assert statuses(db)["2501"][0] == "no_contact"


def test_transient_failures_are_retried_and_the_last_one_recorded(settings, topics, db,
                                                                 plain_smtp):
    server = plain_smtp()
    server.proc.terminate()
    server.proc.wait(10)
    down = replace(settings, survey_secret=SECRET, smtp_host="127.0.0.1",
                   smtp_port=server.port, smtp_starttls=False, sms_provider="none",
                   send_attempts=2)
    produce(down, [created("3001", email="kim@example.com", language="ko"), closed("3001")])
    project(down)

    assert dispatch(down).stats.retried == 1
    status, _, _, attempts, error = statuses(db)["3001"]
    assert (status, attempts) == ("pending", 1) and error.startswith("EMAIL")
    due_later = db.execute("SELECT next_attempt_at > now() FROM survey_dispatch").fetchone()[0]
    assert due_later  # backoff: not retried at once

    db.execute("UPDATE survey_dispatch SET next_attempt_at = now()")
    assert dispatch(down).stats.failed == 1  # the second and last attempt
    assert statuses(db)["3001"][0] == "failed"

    plain_smtp()  # the server is back: a new closure goes through
    produce(down, [created("3002", email="kim@example.com", language="ko"), closed("3002")])
    project(down)
    assert dispatch(down).stats.sent == 1
    assert len(received(server.maildir)) == 1


@pytest.mark.usefixtures("aws_env")
def test_sms_through_an_sns_server(settings, topics, db, moto_server):
    sms = replace(settings, survey_secret=SECRET, smtp_host="", sms_provider="sns",
                  sns_endpoint_url=moto_server.url)
    produce(sms, [created("4001", phone="+12125550142", language="ar"), closed("4001")])
    project(sms)
    assert dispatch(sms).stats.by_channel == {"SMS": 1}
    texts = [m for m in moto_server.sms_messages() if m["phone_number"] == "+12125550142"]
    assert len(texts) == 1 and SHORT_LINK.search(texts[0]["message"])
    assert statuses(db)["4001"][:3] == ("sent", "SMS", "ar")
