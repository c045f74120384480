"""The whole survey loop on the real broker, database, SMTP server and survey page:

closed -> survey email -> its link -> answer -> SurveyAnswered -> projection -> ReopenRequested.
"""

from __future__ import annotations

import re
import uuid
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


def test_the_reopen_reason_is_forwarded_exactly_like_a_ticked_box(settings, topics, db):
    """Three answers through the survey page: the reopen reason alone, the ticked box alone, and
    another reason (no reopen). The first two reach the agency as ReopenRequested, each once,
    keyed by agency, with the survey's event id; the third does not."""
    from producers.survey_web.outbox import answered_event_id
    from survey.links import make_token
    from tests.outbox_helpers import relayed

    settings = replace(settings, survey_secret=SECRET)
    produce(settings, [event for rid in ("5101", "5102", "5103")
                       for event in (created(rid), closed(rid))])
    project(settings)
    forms = {
        "5101": {"satisfaction": "STRONGLY_DISAGREE", "reason": "NOT_CORRECTED_REOPEN",
                 "feedback": "Todavía no hay calefacción."},
        "5102": {"satisfaction": "STRONGLY_DISAGREE", "reopen": "yes",
                 "feedback": "Todavía no hay calefacción."},
        "5103": {"satisfaction": "DISAGREE", "reason": "CORRECTED_TOO_LATE"},
    }
    survey_ids = {rid: str(uuid.uuid4()) for rid in forms}
    with serve_app(create_app(settings)) as base_url, httpx.Client(timeout=10) as client:
        for rid, form in forms.items():
            link = f"{base_url}/survey/{make_token(SECRET, survey_ids[rid], rid, 'es')}"
            assert client.post(link, data=form).status_code == 200
        relayed(settings)
    project(settings)
    answers = db.execute("SELECT request_id, reopen_requested, dissatisfaction_reason "
                         "FROM survey_answers ORDER BY 1").fetchall()
    assert answers == [("5101", True, "NOT_CORRECTED_REOPEN"), ("5102", True, None),
                       ("5103", False, "CORRECTED_TOO_LATE")]
    assert str(db.execute("SELECT event_id FROM survey_answers WHERE request_id = '5101'"
                          ).fetchone()[0]) == answered_event_id(survey_ids["5101"])

    assert forward(settings).stats.forwarded == 2
    assert forward(settings).stats.forwarded == 0  # exactly once per survey
    records = read_all(settings, settings.topic("nyc311.reopen-requested"), expected=2)
    serde = EventProducer(settings).serde
    events = {serde.decode("reopen_requested", r.value())["request_id"]: (r.key(), r.value())
              for r in records}
    assert set(events) == {"5101", "5102"}
    for rid, (key, value) in events.items():
        event = serde.decode("reopen_requested", value)
        assert key == b"HPD"
        assert (event["agency"], event["complaint_type"], event["feedback"],
                str(event["survey_id"]), str(event["event_id"])) == (
            "HPD", "HEAT/HOT WATER", "Todavía no hay calefacción.", survey_ids[rid],
            reopen_event_id(survey_ids[rid]))
