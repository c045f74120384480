"""The whole survey loop on the real broker, database, SMTP server and survey page:

closed -> survey email -> its link -> answer -> SurveyAnswered -> projection -> ReopenRequested.
"""

from __future__ import annotations

import re
from dataclasses import replace

import httpx
import pytest

from consumers.loop import ConsumeLoop
from consumers.reopen_forwarder import GROUP_ID as FORWARDER_GROUP
from consumers.reopen_forwarder import ReopenForwarder, reopen_event_id
from nyc311.kafka import EventProducer
from producers.survey_web import create_app
from tests.consumers.test_dispatcher import SECRET, closed, created, dispatch
from tests.consumers.test_projector import read_all
from tests.helpers import produce, project
from tests.servers import received, serve_app

pytestmark = pytest.mark.integration

LINK = re.compile(r"https?://\S+/survey/[A-Za-z0-9_.\-]+")


def forward(settings) -> ReopenForwarder:
    forwarder = ReopenForwarder(settings)
    ConsumeLoop(settings, FORWARDER_GROUP, forwarder).run(
        until_caught_up=True, max_seconds=60, on_tick=forwarder.tick)
    return forwarder


def test_closed_to_email_to_answer_to_reopen_request(settings, topics, db, plain_smtp):
    smtp = plain_smtp()
    settings = replace(settings, survey_secret=SECRET, smtp_host="127.0.0.1",
                       smtp_port=smtp.port, smtp_starttls=False, sms_provider="none")
    app = create_app(settings)
    with serve_app(app) as base_url:
        settings = replace(settings, survey_base_url=base_url)
        produce(settings, [created("5001", email="rosa@example.com", language="es"),
                           closed("5001"),
                           created("5002", email="sam@example.com", language="en"),
                           closed("5002")])
        project(settings)
        assert dispatch(settings).stats.sent == 2

        mail = {m["To"]: m for m in received(smtp.maildir)}
        body = mail["rosa@example.com"].get_body(("plain",)).get_content()
        link = LINK.search(body).group(0)
        assert link.startswith(base_url)
        with httpx.Client(timeout=10) as client:
            page = client.get(link)
            assert page.status_code == 200 and 'lang="es"' in page.text
            answer = client.post(link, data={"satisfaction": "STRONGLY_DISAGREE",
                                             "reopen": "yes",
                                             "feedback": "Sigue sin calefacción."})
            assert answer.status_code == 200
            again = client.post(link, data={"satisfaction": "AGREE"})
            assert again.status_code == 409  # one answer per survey
            assert "<form" not in client.get(link).text  # a later visit gets no form either

            other = LINK.search(mail["sam@example.com"].get_body(("plain",)).get_content())
            assert client.post(other.group(0), data={"satisfaction": "AGREE"}).status_code == 200

    project(settings)
    answers = db.execute(
        "SELECT a.request_id, a.satisfaction, a.reopen_requested, a.feedback, a.language "
        "FROM survey_answers a JOIN surveys s USING (survey_id) ORDER BY 1").fetchall()
    assert answers == [("5001", "STRONGLY_DISAGREE", True, "Sigue sin calefacción.", "es"),
                       ("5002", "AGREE", False, None, "en")]

    assert forward(settings).stats.forwarded == 1
    assert forward(settings).stats.forwarded == 0  # exactly once per survey
    records = read_all(settings, settings.topic("nyc311.reopen-requested"), expected=1)
    assert len(records) == 1 and records[0].key() == b"HPD"
    event = EventProducer(settings).serde.decode("reopen_requested", records[0].value())
    survey_id = db.execute("SELECT survey_id FROM survey_answers WHERE request_id = '5001'"
                           ).fetchone()[0]
    assert (event["request_id"], event["agency"], event["complaint_type"], event["feedback"],
            str(event["event_id"])) == ("5001", "HPD", "HEAT/HOT WATER",
                                        "Sigue sin calefacción.", reopen_event_id(survey_id))
